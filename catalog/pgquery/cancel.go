package pgquery

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// cancelRetry is how long the engine waits for a cancelled query to stop
// before it asks the server again.
const cancelRetry = 100 * time.Millisecond

// cancelHandler stops the query of a connection whose context is done:
// a CancelRequest, sent again every cancelRetry until the query has
// ended, since PostgreSQL ignores one that reaches an idle backend (a
// query cancelled as it is being sent, before the backend has read it);
// the connection's deadline, cancelGrace after the cancel, is the last
// resort (pgconn's CancelRequestContextWatcherHandler asks only once, so
// such a query ran until that deadline closed its connection).
type cancelHandler struct {
	conn *pgconn.PgConn
	// sent, when not nil, hears of each request the server has read
	// (tests).
	sent chan<- struct{}
	stop context.CancelFunc
	done chan struct{}
}

var _ ctxwatch.Handler = (*cancelHandler)(nil)

func (h *cancelHandler) HandleCancel(context.Context) {
	deadline := time.Now().Add(cancelGrace)
	_ = h.conn.Conn().SetDeadline(deadline)
	ctx, stop := context.WithDeadline(context.Background(), deadline)
	h.stop, h.done = stop, make(chan struct{})
	go func() {
		defer close(h.done)
		for {
			if h.conn.CancelRequest(ctx) == nil && h.sent != nil {
				select {
				case h.sent <- struct{}{}:
				default:
				}
			}
			// A request may reach the backend after the query ended:
			// the connection is not used again before this wait is over
			// (HandleUnwatchAfterCancel waits for it), as in pgconn.
			<-time.After(cancelRetry)
			if ctx.Err() != nil {
				return
			}
		}
	}()
}

func (h *cancelHandler) HandleUnwatchAfterCancel() {
	h.stop()
	<-h.done
	_ = h.conn.Conn().SetDeadline(time.Time{})
}
