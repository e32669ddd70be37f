package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
)

// Sem is a one-slot semaphore: the round trips of one window or account
// run one at a time, in order.
type Sem chan struct{}

// NewSem returns a free Sem.
func NewSem() Sem { return make(Sem, 1) }

// Acquire waits for the slot; a cancelled wait wraps limits.ErrUnavailable.
func (s Sem) Acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", limits.ErrUnavailable, ctx.Err())
	}
}

// TryAcquire takes the slot if it is free.
func (s Sem) TryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release frees the slot.
func (s Sem) Release() { <-s }

var epoch = time.Now()

// Mono is the real time in ns (monotonic): idleness, contact and refusal
// caches are about real time, whatever the Limiter's clock.
func Mono() int64 { return int64(time.Since(epoch)) }

// Loop runs sync every interval, and soon after a send on kick, until stop
// is closed; a sync in progress is cancelled by stop. It closes done when
// it returns.
func Loop(interval time.Duration, kick, stop <-chan struct{}, done chan<- struct{}, sync func(context.Context) error) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-kick:
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		_ = sync(ctx)
		cancel()
	}
}
