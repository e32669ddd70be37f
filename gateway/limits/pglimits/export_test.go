package pglimits

import (
	"context"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
)

// Kill stops b like a crash: the background work ends and nothing is given
// back.
func (b *Backend) Kill() { b.kill() }

// LoseGrant leases units for n on w as Refill does, then forgets the
// answer, as when the round trip fails after the database committed it.
func (b *Backend) LoseGrant(ctx context.Context, w limits.Window, now time.Time, n, limit limits.Units) error {
	win := w.(*window)
	win.Lock()
	r := win.prepare(true)
	r.limit, r.need, r.demand = limit, n, n
	r.localStart = now.UnixNano()
	win.Unlock()
	if err := b.windowRT(ctx, r); err != nil {
		return err
	}
	win.Lock()
	win.restore(r)
	win.Unlock()
	return nil
}
