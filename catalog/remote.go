package catalog

import (
	"context"
	"errors"
	"time"
)

// Replicas sharing a store may funnel their catalog writes through one of
// them, the writer (Options.Remote): a statement that carries a forwarded
// form (Statement.Forward) is sent to the writer, which plans it as the
// same caller and commits it in its own group commits, and the replica that
// sent it answers once it has applied the writer's revision itself (so a
// session reads its own writes on every replica, as after a direct
// append). One writer's batches carry every replica's statements, so the
// store's head is never contended. Forwarding is only a performance path:
// whenever no writer can take the statements (none, this replica is the
// writer, it is unreachable or says it no longer is), they are committed
// here as they would be without it; the store serializes writers anyway.

// ErrNotForwarded is what a RemoteWriter returns when the statements did
// not reach a writer and certainly were not applied: the Service commits
// them itself.
var ErrNotForwarded = errors.New("catalog: statements not forwarded")

// RemoteWriter sends statements to the writer replica (Options.Remote).
type RemoteWriter interface {
	// Forward sends the forwarded forms of stmts (with their callers) to
	// the writer, which commits them as one transaction block (block) or
	// as one statement (Service.CommitForwarded), and returns the revision
	// it committed them at, or the statement's error as the writer
	// answered it, and the audit records of statements that changed
	// nothing (refused ones included), which this replica records before
	// it answers (its own readers see them at once). ErrNotForwarded
	// (errors.Is): nothing was applied, commit them locally. An error
	// whose outcome is unknown (the request may have reached the writer
	// but its answer did not come back) is CodeOutcomeUnknown: the caller
	// must not commit them again.
	Forward(ctx context.Context, stmts []Statement, block bool) (Revision, []AuditEvent, error)
}

// CommitForwarded commits statements another replica forwarded on this
// one (the writer), never forwarding them: one statement (block false,
// exactly one), or a transaction block. The audit records of statements
// that changed nothing are returned, not recorded: the replica that sent
// them records them before it answers its client.
func (s *Service) CommitForwarded(ctx context.Context, stmts []Statement, block bool) (Revision, []AuditEvent, error) {
	o := s.CommitForwardedAll(ctx, []ForwardedChange{{Stmts: stmts, Block: block}})[0]
	return o.Rev, o.Audit, o.Err
}

// ForwardedChange is one change another replica forwarded: one
// statement (Block false), or a transaction block.
type ForwardedChange struct {
	Stmts []Statement
	Block bool
}

// ForwardedOutcome is a forwarded change's outcome (CommitForwarded's).
type ForwardedOutcome struct {
	Rev   Revision
	Audit []AuditEvent
	Err   error
}

// CommitForwardedAll is CommitForwarded of several changes: every one is
// queued for the committer before the first is awaited, so its batches
// take them together without a goroutine per change.
func (s *Service) CommitForwardedAll(ctx context.Context, changes []ForwardedChange) []ForwardedOutcome {
	out := make([]ForwardedOutcome, len(changes))
	queued := make([]*writeReq, len(changes))
	for i, c := range changes {
		if len(c.Stmts) == 0 || (!c.Block && len(c.Stmts) != 1) {
			out[i].Err = Errorf(CodeInvalidArgument, "catalog: one statement, or a block")
			continue
		}
		w, err := s.queueWrite(ctx, c.Stmts, c.Block)
		if err != nil {
			out[i].Err = err
			continue
		}
		queued[i] = w
	}
	for i, w := range queued {
		if w != nil {
			r := <-w.res // always wait: once queued the change may commit
			out[i] = ForwardedOutcome{Rev: r.rev, Audit: r.audit, Err: r.err}
		}
	}
	return out
}

// Forwards reports whether statements may be sent to a writer replica
// (Options.Remote): only then does a statement need its forwarded form.
func (s *Service) Forwards() bool { return s.opts.Remote != nil }

// forwardable reports whether every statement has a forwarded form.
func forwardable(stmts []Statement) bool {
	for _, st := range stmts {
		if st.Forward == nil {
			return false
		}
	}
	return len(stmts) > 0
}

// forwarded sends stmts to the writer (Options.Remote); done false: they
// were not forwarded, commit them here.
func (s *Service) forwarded(ctx context.Context, stmts []Statement, block bool) (rev Revision, done bool, err error) {
	if s.opts.Remote == nil || !forwardable(stmts) {
		return 0, false, nil
	}
	rev, audit, err := s.opts.Remote.Forward(ctx, stmts, block)
	if errors.Is(err, ErrNotForwarded) {
		return 0, false, nil
	}
	if rev, err = s.recordAudit(ctx, rev, audit, err); err == nil {
		// Read your writes: answer once this replica has the revision.
		err = s.awaitRevision(ctx, rev)
	}
	return rev, true, err
}

// awaitNotified is how long a replica waits for the notification of the
// writer's commit of its statements before it reads the records.
const awaitNotified = 20 * time.Millisecond

// awaitRevision waits until this replica has applied rev.
func (s *Service) awaitRevision(ctx context.Context, rev Revision) error {
	if s.Revision() >= rev {
		return nil
	}
	ch, cancel := s.Subscribe()
	defer cancel()
	// The store's notification of the writer's commit carries its records
	// (Carrier): the follower applies them without a read. Only if they do
	// not come soon is the store read.
	read := time.NewTimer(awaitNotified)
	defer read.Stop()
	for s.Revision() < rev {
		select {
		case <-ch:
		case <-read.C:
			s.wantCatchUp(rev)
		case <-ctx.Done():
			return &Error{Code: CodeOutcomeUnknown, Msg: "the statement was committed by the writer replica, but this replica had not applied it when the statement was cancelled", Err: ctx.Err()}
		case <-s.done:
			return Errorf(CodeUnavailable, "catalog is shutting down")
		}
	}
	return nil
}
