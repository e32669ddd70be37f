package sqlfront

import (
	"context"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// txn is a session's transaction state, with PostgreSQL's semantics:
//
//   - BEGIN opens a transaction block. Catalog changes inside it are
//     checked when they run (each sees the block's earlier changes, and so
//     do SHOW, DESCRIBE and EXPLAIN ACCESS) and take effect together at
//     COMMIT: one store transaction, one revision, an audit record per
//     statement. ROLLBACK discards them.
//   - An error aborts the block ('E'): later statements fail with 25P02
//     until ROLLBACK (or ROLLBACK TO a savepoint); COMMIT of a failed block
//     answers ROLLBACK and applies nothing.
//   - Outside a block, statements run in an implicit transaction that ends
//     where PostgreSQL ends it (pgwire.ImplicitTx): after a Query message,
//     so that the statements of a multi-statement query apply together or
//     not at all, and at Sync in the extended protocol, so that a
//     pipeline (pgx's SendBatch) is atomic too. A BEGIN inside makes the
//     implicit transaction's changes so far part of the block; a COMMIT or
//     ROLLBACK ends it early. A Query message with one statement commits
//     it directly (the same outcome, without the extra check).
type txn struct {
	explicit   bool           // in a BEGIN ... COMMIT block
	failed     bool           // a statement failed in the current (explicit or implicit) transaction
	block      *catalog.Block // pending changes; nil until the first one
	savepoints []savepoint
}

type savepoint struct {
	name string
	n    int // statements in the block when it was set
}

// TxStatus implements pgwire.Session: 'T' in a transaction block, 'E' in a
// failed one, 'I' otherwise.
func (s *Session) TxStatus() byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.tx.explicit:
		return 'I'
	case s.tx.failed:
		return 'E'
	}
	return 'T'
}

// Fail implements pgwire.Session: the current transaction is aborted (a
// block until ROLLBACK; an implicit one is rolled back at its end).
func (s *Session) Fail() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tx.failed = true
}

// EndImplicit implements pgwire.ImplicitTx.
func (s *Session) EndImplicit(ctx context.Context) error {
	s.mu.Lock()
	if s.tx.explicit {
		s.mu.Unlock()
		return nil
	}
	b, failed := s.tx.block, s.tx.failed
	s.tx.failed = false
	s.mu.Unlock()
	if b == nil || b.Len() == 0 {
		return nil
	}
	if failed {
		b.Reset()
		return nil
	}
	_, err := b.Commit(ctx)
	return sqlError(err, "", 0)
}

// inTransactionBlock reports whether st runs in a transaction block, as
// PostgreSQL counts them for statements that refuse to (25001): a BEGIN
// block, a multi-statement Query message, or a pipeline whose earlier
// statements wait for Sync.
func (s *Session) inTransactionBlock(st *stmt) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx.explicit || st.inMulti || (s.tx.block != nil && s.tx.block.Len() > 0)
}

// change runs one catalog change: on its own (a Query message's only
// statement outside a block), or into the open transaction.
func (s *Session) change(ctx context.Context, autocommit bool, st catalog.Statement) error {
	s.mu.Lock()
	direct := !s.tx.explicit && autocommit && (s.tx.block == nil || s.tx.block.Len() == 0)
	if !direct && s.tx.block == nil {
		s.tx.block = s.f.cat.Begin()
	}
	b := s.tx.block
	s.mu.Unlock()
	if direct {
		_, err := s.f.cat.WriteStatement(ctx, st)
		return err
	}
	return b.Add(ctx, st)
}

// readModel runs fn with the catalog as the session's transaction sees it:
// committed, plus its own pending changes.
func (s *Session) readModel(fn func(m *catalog.Model)) error {
	s.mu.Lock()
	b := s.tx.block
	s.mu.Unlock()
	if b == nil {
		s.f.cat.Read(fn)
		return nil
	}
	return b.Read(fn)
}

// endTx ends the current transaction: its changes are committed unless it
// failed (then the tag is ROLLBACK, as PostgreSQL answers COMMIT of a
// failed block), or discarded when rollback is set. chain opens a new
// block (COMMIT AND CHAIN).
func (s *Session) endTx(ctx context.Context, rollback, chain bool) (string, error) {
	s.mu.Lock()
	tx := s.tx
	s.tx = txn{block: tx.block, explicit: chain}
	s.mu.Unlock()
	tag := "COMMIT"
	if rollback || tx.failed {
		tag = "ROLLBACK"
	}
	if tx.block == nil || tx.block.Len() == 0 {
		return tag, nil
	}
	if tag == "ROLLBACK" {
		tx.block.Reset()
		return tag, nil
	}
	if _, err := tx.block.Commit(ctx); err != nil {
		return "", err
	}
	return tag, nil
}

func (s *Session) txStmt(x *pg.TransactionStmt) (*stmt, error) {
	run := func(f func(ctx context.Context) (string, error)) *stmt {
		return &stmt{s: s, run: func(ctx context.Context, _ []pgwire.Param, _ pgwire.RowWriter) (string, error) { return f(ctx) }}
	}
	inBlock := func(what string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.tx.explicit {
			return pgwire.Errorf("25P01", "%s can only be used in transaction blocks", what)
		}
		return nil
	}
	switch x.Kind {
	case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
		// A BEGIN inside a block is a no-op (PostgreSQL warns).
		return run(func(context.Context) (string, error) {
			s.mu.Lock()
			s.tx.explicit = true
			s.mu.Unlock()
			return "BEGIN", nil
		}), nil
	case pg.TransactionStmtKind_TRANS_STMT_COMMIT, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		rollback := x.Kind == pg.TransactionStmtKind_TRANS_STMT_ROLLBACK
		st := run(func(ctx context.Context) (string, error) {
			if x.Chain {
				if err := inBlock(map[bool]string{false: "COMMIT AND CHAIN", true: "ROLLBACK AND CHAIN"}[rollback]); err != nil {
					return "", err
				}
			}
			return s.endTx(ctx, rollback, x.Chain)
		})
		st.allowedInFailedTx = true
		return st, nil
	case pg.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return run(func(context.Context) (string, error) {
			if err := inBlock("SAVEPOINT"); err != nil {
				return "", err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			if s.tx.block != nil {
				n = s.tx.block.Len()
			}
			s.tx.savepoints = append(s.tx.savepoints, savepoint{name: x.SavepointName, n: n})
			return "SAVEPOINT", nil
		}), nil
	case pg.TransactionStmtKind_TRANS_STMT_RELEASE, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		release := x.Kind == pg.TransactionStmtKind_TRANS_STMT_RELEASE
		what := map[bool]string{true: "RELEASE SAVEPOINT", false: "ROLLBACK TO SAVEPOINT"}[release]
		st := run(func(context.Context) (string, error) {
			if err := inBlock(what); err != nil {
				return "", err
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			i := len(s.tx.savepoints) - 1
			for i >= 0 && s.tx.savepoints[i].name != x.SavepointName {
				i--
			}
			if i < 0 {
				return "", pgwire.Errorf("3B001", "savepoint %q does not exist", x.SavepointName)
			}
			if release {
				s.tx.savepoints = s.tx.savepoints[:i]
				return "RELEASE", nil
			}
			sp := s.tx.savepoints[i]
			s.tx.savepoints = s.tx.savepoints[:i+1]
			if s.tx.block != nil {
				s.tx.block.Truncate(sp.n)
			}
			s.tx.failed = false
			return "ROLLBACK", nil
		})
		st.allowedInFailedTx = !release
		return st, nil
	}
	return nil, notSupported("two-phase commit")
}
