package catalog

import (
	"context"
	"fmt"
)

// Limits of one transaction block (a session's pending changes are held in
// memory until COMMIT).
const (
	// MaxBlockStatements bounds the changes one block may hold.
	MaxBlockStatements = 10000
	// MaxBlockBytes bounds the statement text (as audited) one block holds.
	MaxBlockBytes = 16 << 20
)

// Block is a transaction block: catalog changes that take effect together,
// at Commit, in one store transaction with one revision and one audit
// record per statement; or never (a Block that is dropped or Reset changes
// nothing).
//
// Until then the changes exist only in the Block. Add checks a statement
// against the committed catalog plus the block's earlier statements, and
// Read shows that same view, so a session reads its own writes. For that
// the block's changes are applied to the catalog's Model under its write
// lock, and they stay applied after the call so that the block's next
// statement need not apply them again (a block of n statements costs O(n),
// not O(n²)); every other user of the Model — a reader, the committer,
// another block — takes them out first (Service.cleanLocked), so nobody
// else ever sees them. While the committed revision stays the one the
// block was planned against, its recorded changes are replayed as they
// are; after another commit its statements are planned again (privilege
// and existence checks included), and one that no longer applies fails
// with CodeConflict. Commit plans them once more in the committer, so what
// commits is always checked against the state it commits onto.
//
// A Block is used by one session at a time (it is not safe for concurrent
// use).
type Block struct {
	svc   *Service
	stmts []Statement
	ends  []int // ends[i] = len(ops) after statement i
	ops   []op  // the changes of stmts, planned against base
	base  Revision
	valid bool // ops are valid for base
	bytes int

	// While svc.pending == b (guarded by svc.mu): the inverses of the
	// changes applied to the Model, and its nextID before them.
	undo   []op
	nextID ID
}

// Begin returns an empty transaction block.
func (s *Service) Begin() *Block { return &Block{svc: s} }

// Len returns the number of statements in the block.
func (b *Block) Len() int { return len(b.stmts) }

// Truncate drops the statements after the first n (ROLLBACK TO SAVEPOINT).
func (b *Block) Truncate(n int) {
	n = max(n, 0)
	if n >= len(b.stmts) {
		return
	}
	b.takeOut()
	for _, st := range b.stmts[n:] {
		b.bytes -= len(st.Req.Caller.Statement)
	}
	clear(b.stmts[n:]) // release the closures (and the secrets they hold)
	b.stmts = b.stmts[:n]
	if b.valid {
		end := 0
		if n > 0 {
			end = b.ends[n-1]
		}
		clear(b.ops[end:])
		b.ops = b.ops[:end]
	}
	b.ends = b.ends[:n]
}

// Reset empties the block (ROLLBACK).
func (b *Block) Reset() { b.Truncate(0) }

// takeOut takes the block's changes out of the Model if they are applied.
func (b *Block) takeOut() {
	s := b.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == b {
		s.cleanLocked()
	}
}

// cleanLocked takes the changes of the pending block, if any, out of the
// Model. The caller holds the write lock.
func (s *Service) cleanLocked() {
	b := s.pending
	if b == nil {
		return
	}
	for j := len(b.undo) - 1; j >= 0; j-- {
		b.undo[j].apply(s.model)
	}
	s.model.nextID = b.nextID // IDs are assigned again at commit
	b.undo = nil
	s.pending = nil
	s.dirty.Store(false)
}

// Add plans st after the block's statements against the committed catalog
// without committing anything. If st succeeds it joins the block. If it
// fails it is audited as a refused statement (as Write does) and the block
// is unchanged. An error with CodeConflict means that the block's earlier
// statements no longer apply (the catalog changed since they were added):
// such a block cannot commit.
func (b *Block) Add(ctx context.Context, st Statement) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(b.stmts) >= MaxBlockStatements {
		return Errorf(CodeLimitExceeded, "a transaction block holds at most %d catalog changes", MaxBlockStatements).
			WithHint("commit the transaction in parts")
	}
	if b.bytes+len(st.Req.Caller.Statement) > MaxBlockBytes {
		return Errorf(CodeLimitExceeded, "a transaction block holds at most %d MiB of statements", MaxBlockBytes>>20).
			WithHint("commit the transaction in parts")
	}
	s := b.svc
	start := s.now()
	var refused *AuditEvent
	err := b.use(func(m *Model) error {
		tx := &Tx{m: m, svc: s, name: st.Req.Caller.Principal}
		err := s.plan(tx, st.Fn)
		if err != nil {
			for j := len(tx.undo) - 1; j >= 0; j-- {
				tx.undo[j].apply(m)
			}
			if !tx.noAudit {
				ev := s.auditEvent(start, st.Req, tx, 0, err)
				refused = &ev
			}
			return err
		}
		b.undo = append(b.undo, tx.undo...)
		b.ops = append(b.ops, tx.ops...)
		b.ends = append(b.ends, len(b.ops))
		b.stmts = append(b.stmts, st)
		b.bytes += len(st.Req.Caller.Statement)
		return nil
	})
	if refused != nil {
		if aerr := s.audit.AppendAudit(ctx, *refused); aerr != nil {
			s.log.Error().Err(aerr).Str("action", refused.Action).Msg("could not audit a refused statement")
		}
	}
	return err
}

// Read runs fn with the committed catalog plus the block's changes. fn runs
// under the catalog's write lock when the block has changes: it must be
// quick and must not keep the Model.
func (b *Block) Read(fn func(m *Model)) error {
	if len(b.stmts) == 0 {
		b.svc.Read(fn)
		return nil
	}
	return b.use(func(m *Model) error { fn(m); return nil })
}

// Commit applies the block's statements as one change: planned again in
// order against the committed catalog (one that no longer applies fails
// the block with CodeConflict and nothing is applied), written in one store
// transaction together with one audit record per statement, under one new
// revision (none when nothing changed). The block is empty afterwards,
// whatever the outcome.
func (b *Block) Commit(ctx context.Context) (Revision, error) {
	b.takeOut()
	stmts := b.stmts
	b.stmts, b.ends, b.ops, b.valid, b.bytes = nil, nil, nil, false, 0
	if len(stmts) == 0 {
		return b.svc.Revision(), nil
	}
	return b.svc.submit(ctx, stmts, true)
}

// use runs fn under the write lock with the block's changes applied to the
// Model (applying them unless they still are from the block's last use),
// and leaves them applied. fn must take out any change of its own that it
// does not add to the block. While the lock is free and no block is
// pending the Model is exactly the committed catalog (the committer takes
// a batch's changes out while it waits for the store), so the block sees
// no undurable change of others.
func (b *Block) use(fn func(m *Model) error) error {
	s := b.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.model
	if s.pending != b || !b.valid || b.base != m.rev {
		s.cleanLocked()
		if err := b.applyLocked(m); err != nil {
			return err
		}
	}
	return fn(m)
}

// applyLocked applies the block's changes to the Model and makes it the
// pending block: its recorded changes when they were planned against the
// current revision, otherwise its statements planned again. On a conflict
// nothing stays applied.
func (b *Block) applyLocked(m *Model) error {
	s := b.svc
	b.nextID = m.nextID
	var undo []op
	if b.valid && b.base == m.rev {
		undo = make([]op, 0, len(b.ops))
		for _, o := range b.ops {
			undo = append(undo, o.apply(m))
		}
	} else {
		b.valid = false
		ops := make([]op, 0, len(b.ops))
		ends := make([]int, 0, len(b.stmts))
		for k, st := range b.stmts {
			tx := &Tx{m: m, svc: s, name: st.Req.Caller.Principal}
			err := s.plan(tx, st.Fn)
			undo = append(undo, tx.undo...)
			if err != nil {
				for j := len(undo) - 1; j >= 0; j-- {
					undo[j].apply(m)
				}
				m.nextID = b.nextID
				return blockConflict(k, st, err)
			}
			ops = append(ops, tx.ops...)
			ends = append(ends, len(ops))
		}
		b.ops, b.ends, b.base, b.valid = ops, ends, m.rev, true
	}
	b.undo = undo
	s.pending = b
	s.dirty.Store(true)
	return nil
}

// blockConflict reports that statement k of a transaction block, which
// applied when it was added, no longer does (another session's change
// committed in between). Failures of the catalog itself pass unchanged.
func blockConflict(k int, st Statement, err error) error {
	switch CodeOf(err) {
	case CodeInternal, CodeUnavailable:
		return err
	}
	return &Error{Code: CodeConflict, Msg: "could not serialize access due to concurrent update",
		Detail: fmt.Sprintf("statement %d of the transaction block (%s) no longer applies: %s", k+1, st.Req.Action, err.Error()),
		Hint:   "the catalog changed while the transaction was open; retry the transaction", Err: err}
}
