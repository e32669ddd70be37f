// Package sqlfront is Mandate's SQL front end: it connects the PostgreSQL
// wire server (sqlfront/pgwire) to the catalog (catalog.Service).
//
// Flow of a query:
//
//	pgwire (messages, auth, TLS, cancel)
//	  → Session.Prepare: parser.Split cuts the text into statements;
//	    governance statements (GRANT, CREATE CONNECTION, SHOW GRANTS, ...)
//	    go to the hand-written parser (sqlfront/parser), everything else to
//	    the PostgreSQL grammar (pg_query) in pgstmt.go
//	  → Statement.Execute: governance statements become catalog.Tx calls
//	    (writes, group-committed durably with their audit record) or reads
//	    of the catalog Model (SHOW, DESCRIBE); session statements (SET,
//	    SHOW, BEGIN, drivers' probes such as SELECT 1 or SELECT version())
//	    are answered from the session; every other SELECT (over system
//	    tables — system.access.audit, system.information_schema,
//	    pg_catalog — or over nothing) goes to sqlfront/systables, which
//	    checks it, writes it for Config.Query, the store's SQL engine, with
//	    PostgreSQL's semantics, and runs it there (sysquery.go is the hook).
//
// Limits (limits.go): sessions start with the server's statement_timeout
// (Config.StatementTimeout), which users may lower and only metastore
// admins raise; pgwire enforces the session's value. Engine calls are
// admitted through a slot (Config.QueryLimits: a few at once, one kept for
// admins, a cap per user; waiting counts against the statement timeout),
// and a watchdog cancels running queries with 53200 when the process's
// resident memory passes the ceiling. Metastore admins are pgwire's
// superusers (the reserved connections).
//
// Errors: catalog errors, parse errors and pg_query errors become
// *pgwire.Error with a SQLSTATE in one function, sqlError (errors.go). The
// SQLSTATEs are documented there and in the README.
//
// Transactions (txblock.go) follow PostgreSQL. Inside BEGIN ... COMMIT the
// catalog changes are checked as they run, against the committed catalog
// plus the block's earlier changes (which SHOW, DESCRIBE, EXPLAIN ACCESS and
// the privilege checks of later statements see; no other session does),
// and take effect together at COMMIT through a catalog.Block: one store
// transaction, one revision, one audit record per statement. ROLLBACK, and
// ROLLBACK TO a savepoint, discard them; an error aborts the block (25P02
// until ROLLBACK; COMMIT answers ROLLBACK); a concurrent change that makes
// one of them fail aborts the COMMIT with 40001. Outside a block the
// statements of one Query message, and of one extended-protocol pipeline up
// to Sync, form an implicit transaction (pgwire.ImplicitTx). SELECTs over
// system tables read the committed catalog, and SET is not undone by
// ROLLBACK.
//
// Forwarding (forwarded.go): a catalog change planned from its statement
// alone carries a forwarded form (its canonical text and the session's
// current catalog) unless its text holds a secret; the writer replica
// plans it from that form as the same caller (ForwardedStatement).
//
// Redaction: the statement text in audit records is parser.Redact of the
// statement (values after PASSWORD and after secret-looking option names,
// URL credentials masked on the token stream).
package sqlfront
