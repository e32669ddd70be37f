package lease

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
)

// AccountTransport is what an Account needs of its lender on the hot
// path. Called with the account locked.
type AccountTransport interface {
	// Usable reports whether the slices held may serve a reservation now
	// (the node API: the lender was reached recently enough and no
	// give-back is in flight).
	Usable() bool
	// Took is told of a reservation served from the slices held (busy
	// accounting, prefetch).
	Took(amount, limit limits.Money)
	// NewMonth is told that month starts: it keeps the earlier month's lease
	// to settle and give back, and resets the transport's own figures;
	// the Account resets its own after it.
	NewMonth(month limits.Month)
	// Register notes the account for the background sync (something to
	// settle).
	Register()
}

// Account is one budget account as this process sees it: slices of the
// lender's account, from which Take reserves worst cases in memory; Settle
// turns reservations into cost settled locally (Cum, cumulative for this
// month's lease: a resend is idempotent), which the transport's background
// sync reports (Sent: what the lender confirmed). It implements
// limits.Account's Take, Put and Settle; the transport adds State and
// Refill (the round trips) and owns the rest of the lease's life.
type Account struct {
	sync.Mutex
	T     AccountTransport
	Month limits.Month

	// Avail is what the slices held have left for reservations; Reserved
	// the worst cases of the calls in flight.
	Avail, Reserved limits.Money
	// Cum is the cost settled locally through this month's lease, Sent
	// the part of it the lender confirmed.
	Cum, Sent limits.Money
	// Served is what was reserved from the slices since the last grant
	// (the next slice's size while busy); Uses counts reservations.
	Served limits.Money
	Uses   uint64
	// Overdraw: a cost settled above its reservation draws Avail below
	// zero (the lender's slice is fixed: the node API); else Avail stops
	// at zero and the excess is spend above the lease (PostgreSQL).
	Overdraw bool
	// Deny is the lender's last refusal for lack of money (At: Mono
	// time): a call needing at least Need more than the slices hold is
	// refused locally for DenyTTL.
	Deny struct {
		Need limits.Money
		At   int64
	}

	// Ops serializes the account's round trips; Waiters counts the
	// refills waiting for them.
	Ops     Sem
	Waiters atomic.Int32
}

// Init sets up an account of month with transport t.
func (a *Account) Init(month limits.Month, t AccountTransport) {
	a.Month, a.T, a.Ops = month, t, NewSem()
}

// Roll moves the account to month if it is later; it reports whether
// month is the account's (an earlier month's call is not served).
func (a *Account) Roll(month limits.Month) bool {
	if month > a.Month {
		a.T.NewMonth(month)
		a.Month, a.Avail, a.Reserved, a.Cum, a.Sent, a.Served, a.Deny.At = month, 0, 0, 0, 0, 0, 0
	}
	return month == a.Month
}

// Denied reports whether the lender's last refusal still refuses a call
// that needs need more than the slices hold.
func (a *Account) Denied(need limits.Money, ns int64) bool {
	return a.Deny.At != 0 && need >= a.Deny.Need && ns-a.Deny.At < int64(DenyTTL)
}

// Take implements limits.Account: a reservation from the slices held, in
// memory; else a refusal the lender made less than DenyTTL ago; else a
// Refill.
func (a *Account) Take(month limits.Month, amount, limit limits.Money) limits.Verdict {
	if !a.Roll(month) {
		return limits.Verdict{Wait: time.Second}
	}
	if amount <= 0 {
		return limits.Verdict{OK: true}
	}
	if amount <= a.Avail && a.T.Usable() {
		a.Avail -= amount
		a.Reserved += amount
		a.Uses++
		a.Served += amount
		a.T.Took(amount, limit)
		return limits.Verdict{OK: true}
	}
	if a.Denied(amount-max(a.Avail, 0), Mono()) {
		return limits.Verdict{}
	}
	return limits.Verdict{Refill: true}
}

// Put implements limits.Account: the reservation goes back to the slice.
func (a *Account) Put(month limits.Month, amount limits.Money) {
	if month != a.Month || amount <= 0 {
		return
	}
	k := min(amount, a.Reserved)
	a.Reserved -= k
	a.Avail += k
}

// Settle implements limits.Account: the reservation is replaced by the
// actual cost, settled locally and reported by the background sync.
func (a *Account) Settle(month limits.Month, reserved, actual limits.Money) {
	if month != a.Month {
		return
	}
	r := min(max(reserved, 0), a.Reserved)
	actual = max(actual, 0)
	a.Reserved -= r
	a.Cum += actual
	switch {
	case actual <= r || a.Overdraw:
		a.Avail += r - actual
	default:
		a.Avail -= min(max(a.Avail, 0), actual-r) // beyond that: spend above the lease (the call's settled difference)
	}
	a.T.Register()
}
