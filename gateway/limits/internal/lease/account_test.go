package lease

import (
	"testing"

	"github.com/mandatehq/mandate/gateway/limits"
)

type fakeAccount struct {
	Account
	usable     bool
	took       limits.Money
	months     []limits.Month
	registered int
}

func (f *fakeAccount) Usable() bool                { return f.usable }
func (f *fakeAccount) Took(amount, _ limits.Money) { f.took += amount }
func (f *fakeAccount) NewMonth(month limits.Month) { f.months = append(f.months, month) }
func (f *fakeAccount) Register()                   { f.registered++ }
func newFakeAccount(month limits.Month) *fakeAccount {
	f := &fakeAccount{usable: true}
	f.Init(month, f)
	return f
}

// Reservations come from the slice in memory; a settle above its
// reservation takes the excess from the slice's rest: below zero when the
// lender's slice is fixed (Overdraw), else down to zero.
func TestAccountSettle(t *testing.T) {
	for _, tc := range []struct {
		overdraw bool
		avail    limits.Money
	}{{false, 0}, {true, -30}} {
		a := newFakeAccount(5)
		a.Overdraw = tc.overdraw
		a.Avail = 100
		if v := a.Take(5, 60, 1000); !v.OK || a.Avail != 40 || a.Reserved != 60 || a.took != 60 {
			t.Fatalf("take: %+v, account %+v", v, &a.Account)
		}
		if v := a.Take(5, 50, 1000); v.OK || !v.Refill {
			t.Fatalf("take beyond the slice: %+v", v)
		}
		a.Settle(5, 60, 130)
		if a.Avail != tc.avail || a.Reserved != 0 || a.Cum != 130 || a.registered != 1 {
			t.Errorf("overdraw %v: after the settle %+v, want Avail %v", tc.overdraw, &a.Account, tc.avail)
		}
	}
}

// A slice the transport says may not serve (the node out of touch, a
// give-back in flight) makes the call refill; the lender's refusal is
// answered locally for a call needing as much; a new month hands the
// lease to the transport and starts from zero; an earlier month's call is
// not served.
func TestAccountUsableDenyMonth(t *testing.T) {
	a := newFakeAccount(5)
	a.Avail = 100
	a.usable = false
	if v := a.Take(5, 10, 1000); v.OK || !v.Refill {
		t.Fatalf("take from an unusable slice: %+v", v)
	}
	a.usable = true
	a.Deny.Need, a.Deny.At = 50, Mono()
	if v := a.Take(5, 160, 1000); v.OK || v.Refill {
		t.Fatalf("take within the refusal: %+v", v)
	}
	if v := a.Take(5, 140, 1000); v.OK || !v.Refill { // needs 40 more: less than the refused 50
		t.Fatalf("take needing less than the refusal: %+v", v)
	}
	a.Take(5, 10, 1000)
	a.Put(5, 10)
	if a.Avail != 100 || a.Reserved != 0 {
		t.Fatalf("after a put: %+v", &a.Account)
	}
	if v := a.Take(6, 10, 1000); v.OK || !v.Refill || a.Month != 6 || a.Avail != 0 || len(a.months) != 1 {
		t.Fatalf("first take of a new month: %+v, account %+v", v, &a.Account)
	}
	if v := a.Take(5, 10, 1000); v.OK || v.Refill {
		t.Fatalf("take of an earlier month: %+v", v)
	}
}
