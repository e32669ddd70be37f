package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// The counters behind the Limiter. A Backend makes one Window per
// rate-limit key (both dimensions) and one Ledger per budget; the Limiter
// locks the objects a call touches (always in one global order), asks each
// to Take, and rolls back on refusal, so a call's admission is one atomic
// step over all its keys. The in-memory backend (NewMemory) holds the
// whole capacity locally; a shared backend holds a leased slice of it and
// asks Refill for more (see doc.go, "Scale-out"). Conformance:
// gateway/limits/limitstest.

// WindowLength is the rate-limit window: limits are "per minute".
const WindowLength = time.Minute

// Granularity is the width of one window bucket (a Stamp).
const Granularity = time.Second

// Buckets is the number of buckets a window check covers: a unit charged
// in bucket s counts against every check made in buckets s … s+Buckets−1.
const Buckets = int64(WindowLength/Granularity) + 1

// Stamp identifies one bucket: Unix time in whole Granularity units.
type Stamp int64

// StampOf returns the bucket of t.
func StampOf(t time.Time) Stamp { return Stamp(floorDiv(t.UnixNano(), int64(Granularity))) }

// Time returns the start of the bucket.
func (s Stamp) Time() time.Time { return time.Unix(0, int64(s)*int64(Granularity)) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) {
		q--
	}
	return q
}

// Month is a calendar month in UTC (year×12 + month−1).
type Month int32

// MonthOf returns the UTC calendar month of t.
func MonthOf(t time.Time) Month {
	y, m, _ := t.UTC().Date()
	return Month(y*12 + int(m) - 1)
}

// Start returns the first instant of the month (UTC).
func (m Month) Start() time.Time {
	return time.Date(int(m)/12, time.Month(int(m)%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// End returns the first instant of the next month (UTC).
func (m Month) End() time.Time { return (m + 1).Start() }

// String renders the month as 2026-07.
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", int(m)/12, int(m)%12+1) }

// WindowScope says whose calls a window counts.
type WindowScope uint8

const (
	ScopeService   WindowScope = iota + 1 // every call to the securable
	ScopePrincipal                        // one user or service principal (subject or actor)
	ScopeGroup                            // the members of one group
)

// WindowKey names one rate-limit counter. The per-principal window of a
// securable is the same whether its limit comes from FOR EACH USER or from
// FOR USER / FOR SERVICE PRINCIPAL, so changing the definition keeps the
// recent count.
type WindowKey struct {
	Securable catalog.ID
	Scope     WindowScope
	Principal catalog.ID // 0 for ScopeService
}

// Units is an amount in each dimension, indexed by Dim. In a limit, 0
// means the dimension is not limited (not checked, not charged).
type Units [2]int64

// Never is the Verdict.Wait of a request that can never fit (it needs more
// than the limit).
const Never time.Duration = -1

// Verdict is the answer of Take.
type Verdict struct {
	OK bool
	// At is where the units were charged (OK): the bucket for a Window.
	At Stamp
	// Dim is, when a Window refuses, the dimension without room (requests
	// are checked first).
	Dim Dim
	// Wait is, when refused, how long until the units could fit if nothing
	// else is taken meanwhile (Never: not within any window).
	Wait time.Duration
	// Refill is set when refused for lack of local allowance: Refill may
	// obtain more from the shared store. The in-memory backend never sets
	// it.
	Refill bool
	// Retired is set when the window was retired (see Retire): nothing
	// was charged; the caller looks up the key's live window.
	Retired bool
	// Remaining and Reset are, when a Window admits, its Status after the
	// charge (for the response's x-ratelimit-* headers).
	Remaining Units
	Reset     [2]time.Duration
}

// Window is the rate-limit counter of one key, both dimensions, as this
// process sees it. Every method except Refill is called with the lock
// held; Refill is called without it and locks what it changes.
type Window interface {
	sync.Locker
	// Take charges n at now if, in every limited dimension, the units
	// charged in the last Buckets buckets (now's included) plus n stay
	// within limit.
	Take(now time.Time, n, limit Units) Verdict
	// Put gives back n charged at at (refund, release); units whose bucket
	// left the window are not given back.
	Put(now time.Time, at Stamp, n Units)
	// Add charges n more unconditionally: to bucket at while it is in the
	// window, else to now's (settled usage above the reservation; replay
	// after a restart). It returns false, charging nothing, if the window
	// is retired.
	Add(now time.Time, at Stamp, n Units) bool
	// Status reports, per dimension, the units left under limit and the
	// time until the dimension's count is zero again (provider-style
	// remaining and reset).
	Status(now time.Time, limit Units) (remaining Units, reset [2]time.Duration)
	// Retire is the Limiter's sweep: if the window holds nothing (no
	// charge in the window, no lease outstanding), it retires for good and
	// returns true, and the Limiter drops it. A retired window answers
	// Take with Verdict.Retired and Add with false; Put does nothing.
	Retire(now time.Time) bool
	// Refill asks the shared store for allowance for n (see
	// Verdict.Refill).
	Refill(ctx context.Context, now time.Time, n, limit Units) error
}

// Ledger is the running state of one budget: one Account for a budget of
// one scope (principal 0), one per subject for FOR EACH USER.
type Ledger interface {
	// Account returns the principal's account, creating it (safe for
	// concurrent use). Accounts live as long as the Ledger.
	Account(principal catalog.ID) Account
	// Accounts lists the accounts with spend or reservations in month.
	Accounts(month Month) []AccountState
}

// AccountState is one account's figures for a month.
type AccountState struct {
	Principal       catalog.ID
	Spent, Reserved Money
}

// Account is one budget counter. Every method except Refill is called with
// the lock held. Figures belong to one month: the first call with a later
// month starts the account afresh; calls for an earlier month are ignored.
type Account interface {
	sync.Locker
	// Take reserves amount if spent + reserved + amount stays within limit.
	Take(month Month, amount, limit Money) Verdict
	// Put gives back a reservation that was not used.
	Put(month Month, amount Money)
	// Settle replaces a reservation with the actual cost.
	Settle(month Month, reserved, actual Money)
	// State returns the month's spent and reserved amounts.
	State(month Month) (spent, reserved Money)
	// Refill asks the shared store for allowance for amount.
	Refill(ctx context.Context, month Month, amount, limit Money) error
}

// ErrUnavailable is wrapped by a Refill error when the shared store cannot
// be reached: Reserve then refuses with LimitUnavailable or
// BudgetUnavailable (503) instead of reporting the limit or budget as
// exhausted.
var ErrUnavailable = errors.New("limits: shared state unavailable")

// Backend makes the counters.
type Backend interface {
	// Window returns a new, empty counter for key.
	Window(key WindowKey) Window
	// Ledger returns the state of budget b, its spend this month loaded
	// (which may need I/O). Called by Apply for each new budget scope; an
	// error leaves the budget unavailable (calls it applies to are
	// refused) until a later Apply succeeds.
	Ledger(ctx context.Context, b *Budget, month Month) (Ledger, error)
}
