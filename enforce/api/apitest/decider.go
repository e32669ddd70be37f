package apitest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// Key is one grant of the fake: Subject holds Privilege on the securable.
type Key struct {
	Subject   string
	Privilege catalog.Privilege
	Type      catalog.SecurableType
	Name      string
}

// Decider is a fake enforce.Decider. The zero value is not usable; call New.
type Decider struct {
	mu      sync.Mutex
	rev     catalog.Revision
	grants  map[Key]bool
	policy  map[Key]bool
	subs    map[chan catalog.Revision]struct{}
	changed chan struct{} // closed and replaced at every new revision
	calls   atomic.Int64
}

var _ enforce.Decider = (*Decider)(nil)

// New returns a fake at revision rev with no grants.
func New(rev catalog.Revision) *Decider {
	return &Decider{rev: rev, grants: map[Key]bool{}, policy: map[Key]bool{}, subs: map[chan catalog.Revision]struct{}{}, changed: make(chan struct{})}
}

// Grant adds a grant and returns the new revision.
func (d *Decider) Grant(k Key) catalog.Revision { return d.change(func() { d.grants[k] = true }) }

// Revoke removes a grant and returns the new revision.
func (d *Decider) Revoke(k Key) catalog.Revision { return d.change(func() { delete(d.grants, k) }) }

// Policy attaches a policy to k's question: allowed answers to it are then
// Contextual (as the engine's are when it evaluated a policy). It returns
// the new revision.
func (d *Decider) Policy(k Key) catalog.Revision { return d.change(func() { d.policy[k] = true }) }

// Bump advances the revision without another change.
func (d *Decider) Bump() catalog.Revision { return d.change(func() {}) }

func (d *Decider) change(fn func()) catalog.Revision {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn()
	d.rev++
	close(d.changed)
	d.changed = make(chan struct{})
	for c := range d.subs {
		select { // latest value: replace an unread older revision
		case <-c:
		default:
		}
		c <- d.rev
	}
	return d.rev
}

// Calls counts Decide and DecideAt calls.
func (d *Decider) Calls() int64 { return d.calls.Load() }

// Subscribers counts the open subscriptions.
func (d *Decider) Subscribers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.subs)
}

func (d *Decider) decideLocked(r enforce.Request) enforce.Decision {
	k := Key{Subject: r.Subject, Privilege: r.Privilege, Type: r.Securable.Type, Name: r.Securable.Name}
	check := fmt.Sprintf("%s on %s %s", r.Privilege.SQL(), r.Securable.Type, r.Securable.Name)
	if d.grants[k] {
		return enforce.Decision{Allowed: true, Reason: fmt.Sprintf("%s granted to %q", check, r.Subject), Revision: d.rev,
			Contextual: d.policy[k],
			Steps:      []enforce.Step{{Principal: r.Subject, Role: "subject", Check: check, Result: "allow", Reason: "direct grant"}}}
	}
	return enforce.Decision{Reason: fmt.Sprintf("%q lacks %s", r.Subject, check), Revision: d.rev}
}

// Decide implements enforce.Decider.
func (d *Decider) Decide(_ context.Context, r enforce.Request) enforce.Decision {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.decideLocked(r)
}

// DecideAt implements enforce.Decider.
func (d *Decider) DecideAt(ctx context.Context, r enforce.Request, atLeast catalog.Revision) (enforce.Decision, error) {
	d.calls.Add(1)
	for {
		d.mu.Lock()
		if d.rev >= atLeast {
			defer d.mu.Unlock()
			return d.decideLocked(r), nil
		}
		ch := d.changed
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return enforce.Decision{}, enforce.ErrStale
		}
	}
}

// Revision implements enforce.Decider.
func (d *Decider) Revision() catalog.Revision {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rev
}

// Subscribe implements enforce.Decider.
func (d *Decider) Subscribe() (<-chan catalog.Revision, func()) {
	c := make(chan catalog.Revision, 1)
	d.mu.Lock()
	d.subs[c] = struct{}{}
	d.mu.Unlock()
	return c, func() {
		d.mu.Lock()
		delete(d.subs, c)
		d.mu.Unlock()
	}
}
