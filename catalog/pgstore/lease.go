package pgstore

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
)

// forwardLock is the advisory lock whose holder forwards the change audit
// of the replicas' catalog changes.
const forwardLock = 0x6d616e64_66776420 // "mandfwd "

// forwardIdleTimeout is the lease connection's idle_session_timeout: the
// server ends the session of a holder that stopped renewing (a process
// cut off from the database, or frozen), and with it the lock, this long
// after its last renewal (the Service renews every second).
const forwardIdleTimeout = "5s"

// ForwardLease is a catalog.ForwardLease on the shared event stream: a
// session-level advisory lock on a connection of its own. The lock goes
// with the session: a holder that dies (its connection closed), is cut
// off or stops renewing for forwardIdleTimeout loses it, and the next
// replica to try takes it. Exclusivity is not needed for correctness:
// AppendChangeAudit and the spools' ApplyLog store a change's audit once
// whoever forwards it, so a second forwarder during a handover costs work,
// not duplicates.
type ForwardLease struct {
	e *Events

	mu   sync.Mutex
	conn *pgx.Conn
	held bool
}

var _ catalog.ForwardLease = (*ForwardLease)(nil)

// ForwardLease returns the lease of the change audit forwarder for this
// replica (each replica has its own ForwardLease; they compete for one
// lock).
func (e *Events) ForwardLease() *ForwardLease { return &ForwardLease{e: e} }

// Hold implements catalog.ForwardLease: the lock is tried (not awaited)
// when not held, and the holding session confirmed (one round trip,
// which also keeps it from the idle timeout) when held.
func (l *ForwardLease) Hold(ctx context.Context) (bool, error) {
	if err := l.e.check(ctx); err != nil {
		return false, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		cfg := l.e.pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["idle_session_timeout"] = forwardIdleTimeout
		cfg.RuntimeParams["application_name"] = "mandate-forward-lease"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return false, translate(ctx, "connect for the forward lease", err)
		}
		l.conn, l.held = conn, false
	}
	var err error
	if l.held {
		_, err = l.conn.Exec(ctx, "SELECT 1")
	} else {
		err = l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", int64(forwardLock)).Scan(&l.held)
	}
	if err != nil {
		l.closeLocked()
		return false, translate(ctx, "hold the forward lease", err)
	}
	return l.held, nil
}

// AuditedRevision implements catalog.ForwardLease: the shared event
// stream's mark.
func (l *ForwardLease) AuditedRevision(ctx context.Context) (catalog.Revision, error) {
	return l.e.AuditedRevision(ctx)
}

// Release implements catalog.ForwardLease: the lock is released (at once,
// for the next replica's try) and the session ends.
func (l *ForwardLease) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(forwardLock))
		cancel()
	}
	l.closeLocked()
}

func (l *ForwardLease) closeLocked() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = l.conn.Close(ctx)
		cancel()
	}
	l.conn, l.held = nil, false
}
