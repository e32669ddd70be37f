package catalog_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// countingStore counts store appends.
type countingStore struct {
	*memstore.Store
	txs atomic.Int64
}

func (c *countingStore) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	c.txs.Add(1)
	return c.Store.Append(ctx, base, changes)
}

func openCounting(t testing.TB) (*catalog.Service, *countingStore) {
	t.Helper()
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	st := &countingStore{Store: memstore.New()}
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: st, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, st
}

func stmt(action string, fn func(tx *catalog.Tx) error) catalog.Statement {
	return catalog.Statement{Req: catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser, Statement: action}, Action: action}, Fn: fn}
}

func createGroup(name string) catalog.Statement {
	return stmt("CREATE GROUP "+name, func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindGroup, name, nil, false) })
}

func hasPrincipal(read func(func(*catalog.Model)), name string) (ok bool) {
	read(func(m *catalog.Model) { _, ok = m.PrincipalByName(name) })
	return ok
}

func blockRead(t testing.TB, b *catalog.Block) func(func(*catalog.Model)) {
	return func(fn func(*catalog.Model)) {
		if err := b.Read(fn); err != nil {
			t.Fatalf("Block.Read: %v", err)
		}
	}
}

func auditCount(t testing.TB, svc *catalog.Service, action string) (n int, revs []catalog.Revision) {
	t.Helper()
	evs, err := svc.Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == action {
			n++
			revs = append(revs, e.Revision)
		}
	}
	return n, revs
}

// TestBlockCommitsTogether: a block's statements see each other, are seen
// by nobody else until Commit, and commit in one store transaction under
// one revision with an audit record each.
func TestBlockCommitsTogether(t *testing.T) {
	svc, st := openCounting(t)
	ctx := t.Context()
	rev, txs := svc.Revision(), st.txs.Load()
	b := svc.Begin()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Add(ctx, stmt("CREATE CATALOG", func(tx *catalog.Tx) error { return tx.CreateCatalog("sales", false, nil) })))
	// Planned against the committed catalog plus the block: the catalog exists.
	must(b.Add(ctx, stmt("CREATE SCHEMA", func(tx *catalog.Tx) error { return tx.CreateSchema([]string{"sales", "crm"}, false, nil) })))
	must(b.Add(ctx, createGroup("reps")))
	must(b.Add(ctx, stmt("GRANT", func(tx *catalog.Tx) error {
		return tx.Grant([]catalog.Privilege{catalog.PrivUseSchema}, catalog.TypeSchema, []string{"sales", "crm"}, []string{"reps"})
	})))
	// A refused statement is audited at once and leaves the block as it was.
	if err := b.Add(ctx, createGroup("reps")); !catalog.IsCode(err, catalog.CodeAlreadyExists) {
		t.Fatalf("duplicate CREATE GROUP in the block: %v, want CodeAlreadyExists", err)
	}
	if n, revs := auditCount(t, svc, "CREATE GROUP reps"); n != 1 || revs[0] != 0 {
		t.Fatalf("audit before commit: %d CREATE GROUP events %v, want the refused one", n, revs)
	}
	if b.Len() != 4 {
		t.Fatalf("block holds %d statements, want 4", b.Len())
	}
	if !hasPrincipal(blockRead(t, b), "reps") || hasPrincipal(svc.Read, "reps") {
		t.Fatal("the block must see its group and the committed catalog must not")
	}
	if svc.Revision() != rev {
		t.Fatalf("revision moved to %d before commit", svc.Revision())
	}
	got, err := b.Commit(ctx)
	must(err)
	if got != rev+1 || svc.Revision() != rev+1 {
		t.Errorf("commit revision %d (service %d), want %d", got, svc.Revision(), rev+1)
	}
	if n := st.txs.Load() - txs; n != 1 {
		t.Errorf("%d store transactions for the commit, want 1", n)
	}
	for _, action := range []string{"CREATE CATALOG", "CREATE SCHEMA", "GRANT"} {
		if n, revs := auditCount(t, svc, action); n != 1 || revs[0] != got {
			t.Errorf("%s: %d audit events with revisions %v, want 1 with %d", action, n, revs, got)
		}
	}
	if n, revs := auditCount(t, svc, "CREATE GROUP reps"); n != 2 || revs[1] != got {
		t.Errorf("CREATE GROUP: audit revisions %v, want [0 %d]", revs, got)
	}
	svc.Read(func(m *catalog.Model) {
		sch, err := m.Lookup(catalog.TypeSchema, []string{"sales", "crm"})
		g, _ := m.PrincipalByName("reps")
		if err != nil || g == nil || !m.HasGrant(catalog.GrantKey{Securable: sch.ID, Principal: g.ID, Privilege: catalog.PrivUseSchema}) {
			t.Errorf("after commit: schema %v, group %v, grant missing", err, g)
		}
	})
	if b.Len() != 0 {
		t.Errorf("block holds %d statements after commit", b.Len())
	}
}

// TestBlockConflict: a change committed by someone else that makes a
// pending statement fail aborts the block (CodeConflict) at its next use
// and at commit, and nothing of it is applied.
func TestBlockConflict(t *testing.T) {
	svc, _ := openCounting(t)
	ctx := t.Context()
	b := svc.Begin()
	if err := b.Add(ctx, createGroup("first")); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, createGroup("contested")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Write(ctx, adminReq, func(tx *catalog.Tx) error {
		return tx.CreatePrincipal(catalog.KindGroup, "contested", nil, false)
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Read(func(*catalog.Model) {}); !catalog.IsCode(err, catalog.CodeConflict) {
		t.Fatalf("Read after a conflicting commit: %v, want CodeConflict", err)
	}
	rev := svc.Revision()
	_, err := b.Commit(ctx)
	if !catalog.IsCode(err, catalog.CodeConflict) || !strings.Contains(err.(*catalog.Error).Detail, "statement 2") {
		t.Fatalf("Commit: %v, want CodeConflict naming statement 2", err)
	}
	if svc.Revision() != rev || hasPrincipal(svc.Read, "first") {
		t.Error("a failed commit applied part of the block")
	}
}

// TestBlockTruncate: ROLLBACK TO SAVEPOINT drops the later statements.
func TestBlockTruncate(t *testing.T) {
	svc, _ := openCounting(t)
	ctx := t.Context()
	b := svc.Begin()
	for _, g := range []string{"a", "b", "c"} {
		if err := b.Add(ctx, createGroup(g)); err != nil {
			t.Fatal(err)
		}
	}
	b.Truncate(1)
	if hasPrincipal(blockRead(t, b), "b") {
		t.Fatal("truncated statement still visible")
	}
	if err := b.Add(ctx, createGroup("b")); err != nil { // its name is free again
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if !hasPrincipal(svc.Read, "a") || !hasPrincipal(svc.Read, "b") || hasPrincipal(svc.Read, "c") {
		t.Error("after commit want a and b, not c")
	}
}

// TestBlockLimits: a block holds a bounded amount of statement text.
func TestBlockLimits(t *testing.T) {
	svc, _ := openCounting(t)
	b := svc.Begin()
	big := createGroup("big")
	big.Req.Caller.Statement = strings.Repeat("x", catalog.MaxBlockBytes+1)
	if err := b.Add(t.Context(), big); !catalog.IsCode(err, catalog.CodeLimitExceeded) {
		t.Fatalf("oversized statement: %v, want CodeLimitExceeded", err)
	}
}

// TestBlocksConcurrent runs blocks, single writes and readers at once
// (run with -race): every block commits whole or not at all, IDs never
// collide, and readers never see a pending change.
func TestBlocksConcurrent(t *testing.T) {
	svc, st := openCounting(t)
	ctx := t.Context()
	const workers, rounds = 4, 25
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var leaked atomic.Bool
	go func() { // a reader that must never see a block's pending group
		for {
			select {
			case <-stop:
				return
			default:
			}
			svc.Read(func(m *catalog.Model) {
				for _, p := range m.Principals(catalog.KindGroup) {
					if strings.HasPrefix(p.Name, "pending-") {
						leaked.Store(true)
					}
				}
			})
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				b := svc.Begin()
				names := []string{fmt.Sprintf("blk-%d-%d-a", w, r), fmt.Sprintf("blk-%d-%d-b", w, r)}
				for _, n := range names {
					if err := b.Add(ctx, createGroup(n)); err != nil {
						t.Error(err)
						return
					}
				}
				if r%5 == 0 {
					if err := b.Add(ctx, createGroup(fmt.Sprintf("pending-%d-%d", w, r))); err != nil {
						t.Error(err)
						return
					}
					b.Reset()
					continue
				}
				if _, err := svc.Write(ctx, adminReq, func(tx *catalog.Tx) error {
					return tx.CreateCatalog(fmt.Sprintf("cat_%d_%d", w, r), false, nil)
				}); err != nil {
					t.Error(err)
					return
				}
				if _, err := b.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if leaked.Load() {
		t.Error("a reader saw a pending change of a block")
	}
	ids := map[catalog.ID]string{}
	svc.Read(func(m *catalog.Model) {
		for _, p := range m.Principals("") {
			if other, dup := ids[p.ID]; dup {
				t.Errorf("ID %d used by %s and %s", p.ID, other, p.Name)
			}
			ids[p.ID] = p.Name
		}
		want := 2 + workers*rounds*4/5*2 // admin, account users, two groups per committed block
		if got := len(m.Principals("")); got != want {
			t.Errorf("%d principals, want %d", got, want)
		}
	})
	// The catalog reloaded from the store equals the live one.
	m, err := catalog.Load(ctx, st.Store)
	if err != nil {
		t.Fatal(err)
	}
	if p, _, _ := m.Stats(); p != len(ids) {
		t.Errorf("store has %d principals, model %d", p, len(ids))
	}
}

// BenchmarkBlock compares a change committed on its own (Write) with the
// same change through a Block (Add checks it under the write lock, Commit
// plans it again in the committer: the path of an extended-protocol
// statement outside BEGIN), and measures blocks of n changes: alone (the
// block's changes stay applied between its statements, so a change costs
// the same in any block) and with a reader between every two statements
// (the changes are taken out for the reader and applied again for the
// next statement, so the cost per change grows with the block). The store
// is memstore: this is the catalog's CPU cost, no fsync. ns/stmt is per
// change.
//
//	go test -run '^$' -bench BenchmarkBlock -benchtime 2s ./catalog/
func BenchmarkBlock(b *testing.B) {
	grant := func(i int, revoke bool) catalog.Statement {
		g := fmt.Sprintf("g%d", i%64)
		return stmt("GRANT", func(tx *catalog.Tx) error {
			if revoke {
				return tx.Revoke([]catalog.Privilege{catalog.PrivUseCatalog}, catalog.TypeCatalog, []string{"system"}, []string{g})
			}
			return tx.Grant([]catalog.Privilege{catalog.PrivUseCatalog}, catalog.TypeCatalog, []string{"system"}, []string{g})
		})
	}
	setup := func(b *testing.B) *catalog.Service {
		svc, _ := openCounting(b)
		for i := range 64 {
			if _, err := svc.Write(b.Context(), adminReq, createGroup(fmt.Sprintf("g%d", i)).Fn); err != nil {
				b.Fatal(err)
			}
		}
		return svc
	}
	perStmt := func(b *testing.B, n int) {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/stmt")
	}
	b.Run("write", func(b *testing.B) {
		svc := setup(b)
		for i := 0; b.Loop(); i++ {
			st := grant(i, i%128 >= 64)
			if _, err := svc.Write(b.Context(), st.Req, st.Fn); err != nil {
				b.Fatal(err)
			}
		}
		perStmt(b, 1)
	})
	for _, bc := range []struct {
		n     int
		reads bool // another reader between the statements: the block's changes are taken out and applied again each time
	}{{1, false}, {10, false}, {100, false}, {1000, false}, {10000, false}, {100, true}, {1000, true}} {
		name := fmt.Sprintf("block-%d", bc.n)
		if bc.reads {
			name += "-interleaved-reads"
		}
		n := bc.n
		b.Run(name, func(b *testing.B) {
			svc := setup(b)
			blk := svc.Begin()
			for i := 0; b.Loop(); i++ {
				for k := range n {
					j := i*n + k
					if err := blk.Add(b.Context(), grant(j, (j/64)%2 == 1)); err != nil {
						b.Fatal(err)
					}
					if bc.reads {
						svc.Read(func(*catalog.Model) {})
					}
				}
				if _, err := blk.Commit(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			perStmt(b, n)
		})
	}
}
