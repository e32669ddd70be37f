package oauthconnect

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// TestSharedFlowsPerUser: with a shared FlowStore (replicas on one
// database) a user keeps at most maxUserFlows sign-ins in progress, the
// newest, whichever replicas approved them and however concurrently, as
// in the in-memory table (TestFlowsPerUser); other users' flows are kept.
func TestSharedFlowsPerUser(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) keystore.Store
	}{
		{"directory", func(t *testing.T) keystore.Store { return keystore.Dir(t.TempDir()) }},
		{"postgres", func(t *testing.T) keystore.Store {
			server := pgtest.Start(t, pgtest.Options{})
			server.CreateDatabase(t, "mandate")
			s, err := pgstore.Open(t.Context(), server.URL("mandate"), pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			kr, err := catalog.NewKeyring(make([]byte, 32))
			if err != nil {
				t.Fatal(err)
			}
			return keystore.Sealed(s.Keys(), kr)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := tc.store(t)
			e := newEnv(t)
			e.store = NewSharedTokenStore(ks)
			replicas := []*Connector{e.newConnector(), e.newConnector()}
			ctx := t.Context()
			// The shared store prunes by the wall clock.
			flowOf := func(user string, i int) *flow {
				return &flow{user: user, connection: connName, expires: time.Now().Add(FlowTTL + time.Duration(i)*time.Millisecond)}
			}
			rows := func() int {
				t.Helper()
				bs, err := ks.List(ctx, flowPrefix)
				if err != nil {
					t.Fatal(err)
				}
				return len(bs)
			}
			const n = 3 * maxUserFlows
			var states []string
			for i := range n {
				st := fmt.Sprintf("alice-%d", i)
				if !replicas[i%2].putFlow(ctx, st, flowOf("alice@example.com", i)) {
					t.Fatalf("alice's flow %d refused", i)
				}
				states = append(states, st)
			}
			if !replicas[0].putFlow(ctx, "bob-0", flowOf("bob@example.com", 0)) {
				t.Fatal("bob's sign-in refused")
			}
			if got := rows(); got != maxUserFlows+1 {
				t.Fatalf("%d flows stored, want %d (alice's newest %d and bob's)", got, maxUserFlows+1, maxUserFlows)
			}
			for i, st := range states {
				kept := replicas[(i+1)%2].takeFlow(ctx, st) != nil
				if want := i >= n-maxUserFlows; kept != want {
					t.Fatalf("alice's flow %d of %d: kept %v, want %v", i, n, kept, want)
				}
			}
			if replicas[1].takeFlow(ctx, "bob-0") == nil {
				t.Fatal("bob's flow lost")
			}
			// Replicas approving one user's sign-ins at once.
			var wg sync.WaitGroup
			for r, k := range replicas {
				wg.Go(func() {
					for i := range 2 * maxUserFlows {
						if !k.putFlow(ctx, fmt.Sprintf("carol-%d-%d", r, i), flowOf("carol@example.com", i)) {
							t.Errorf("carol's flow %d on replica %d refused: %s", i, r, e.logs.String())
						}
					}
				})
			}
			wg.Wait()
			if got := rows(); got != maxUserFlows {
				t.Fatalf("%d flows stored after concurrent sign-ins of one user, want %d", got, maxUserFlows)
			}
		})
	}
}

// TestUsedTicketsBounded: without a FlowStore a node remembers at most
// maxUsedTickets used tickets; when that many are unexpired it refuses new
// ones (fail closed: forgetting one would let it be used again), still
// refuses a used one as used, and accepts new ones once old ones expire.
func TestUsedTicketsBounded(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tk := func(i int) *ticket {
		return &ticket{User: "alice@example.com", Connection: connName, Nonce: fmt.Sprintf("nonce-%d", i), Expires: e.clock.Now().Add(TicketTTL)}
	}
	for i := range maxUsedTickets {
		if err := e.k.consumeTicket(ctx, tk(i)); err != nil {
			t.Fatalf("ticket %d: %v", i, err)
		}
	}
	if err := e.k.consumeTicket(ctx, tk(maxUsedTickets)); err == nil || errors.Is(err, errTicketUsed) {
		t.Fatalf("a ticket beyond the bound: %v, want refused as busy", err)
	}
	if err := e.k.consumeTicket(ctx, tk(0)); !errors.Is(err, errTicketUsed) {
		t.Fatalf("a used ticket at the bound: %v, want %v", err, errTicketUsed)
	}
	e.k.fmu.Lock()
	n := len(e.k.usedTicket)
	e.k.fmu.Unlock()
	if n > maxUsedTickets {
		t.Fatalf("%d used tickets remembered, bound %d", n, maxUsedTickets)
	}
	e.clock.Add(TicketTTL)
	if err := e.k.consumeTicket(ctx, tk(maxUsedTickets+1)); err != nil {
		t.Fatalf("a new ticket once the old ones expired: %v", err)
	}
}
