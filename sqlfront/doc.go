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
// Errors: catalog errors, parse errors and pg_query errors become
// *pgwire.Error with a SQLSTATE in one function, sqlError (errors.go). The
// SQLSTATEs are documented there and in the README.
//
// Transactions: every governance statement commits on its own (autocommit).
// BEGIN/COMMIT/ROLLBACK are accepted so that drivers work and ReadyForQuery
// reports the right status, but statements inside a block are not rolled
// back by ROLLBACK.
package sqlfront
