package walstore

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// keepOpen lets a memstore outlive the walstore that wraps it, standing in
// for a durable inner store across "restarts".
type keepOpen struct{ *memstore.Store }

func (keepOpen) Close() error { return nil }

func TestConformance(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) catalog.Store {
		s, err := Open(t.Context(), t.TempDir(), memstore.New(), Options{ApplyInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestConformanceNeverApplied(t *testing.T) {
	// Everything stays in the log until a read needs it.
	storetest.RunConformance(t, func(t *testing.T) catalog.Store {
		s, err := Open(t.Context(), t.TempDir(), memstore.New(), Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestDurability(t *testing.T) {
	var mu sync.Mutex
	inners := map[string]*memstore.Store{}
	storetest.RunDurability(t, func(t *testing.T, dir string) catalog.Store {
		mu.Lock()
		in := inners[dir]
		if in == nil {
			in = memstore.New()
			inners[dir] = in
		}
		mu.Unlock()
		s, err := Open(t.Context(), dir, keepOpen{in}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// crash abandons s without applying what is pending, as a kill -9 would.
func crash(t *testing.T, s *Store) {
	t.Helper()
	s.closed.Store(true)
	close(s.done)
	<-s.stopped
	s.f.Close()
}

func grant(i int) catalog.Grant {
	return catalog.Grant{Securable: 1, Principal: catalog.ID(100 + i), Privilege: catalog.PrivUseConnection, Grantor: 1}
}

func TestReplayAfterCrash(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	s, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
			if err := tx.AddGrant(ctx, grant(i)); err != nil {
				return err
			}
			if err := tx.AppendAudit(ctx, catalog.AuditEvent{EventID: "e" + string(rune('a'+i)), Time: time.Now(), Action: "GRANT"}); err != nil {
				return err
			}
			return tx.SetMeta(ctx, catalog.Meta{Revision: catalog.Revision(i + 1), NextID: 200})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if gs, _ := inner.ListGrants(ctx); len(gs) != 0 {
		t.Fatalf("inner store has %d grants before any apply; the test needs them pending", len(gs))
	}
	crash(t, s)
	// A torn record at the end (a crash in the middle of an append).
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, '{', '"'}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s2, err := Open(ctx, dir, inner, Options{})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := s2.ListGrants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 10 {
		t.Fatalf("after replay: %d grants, want 10", len(gs))
	}
	m, _ := s2.Meta(ctx)
	if m.Revision != 10 || m.NextID != 200 {
		t.Fatalf("meta after replay = %+v", m)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	// Exactly once: a third open replays nothing again.
	s3, err := Open(ctx, dir, inner, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	ev, err := s3.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 10 {
		t.Fatalf("audit events after two reopens = %d, want 10 (no duplicates)", len(ev))
	}
	if st, _ := os.Stat(filepath.Join(dir, FileName)); st.Size() != 0 {
		t.Fatalf("log not truncated after everything was applied: %d bytes", st.Size())
	}
}

// failingStore fails every write transaction, as a full disk would.
type failingStore struct{ *memstore.Store }

func (failingStore) ReadWriteTx(context.Context, func(context.Context, catalog.RWTx) error) error {
	return catalog.Errorf(catalog.CodeUnavailable, "disk full")
}

func TestApplyFailureKeepsLog(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(ctx, dir, failingStore{memstore.New()}, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return tx.AddGrant(ctx, grant(1)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListGrants(ctx); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("read with a failing inner store: %v, want unavailable", err)
	}
	crash(t, s)
	inner := keepOpen{memstore.New()}
	s2, err := Open(ctx, dir, inner, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if gs, _ := s2.ListGrants(ctx); len(gs) != 1 {
		t.Fatalf("the log lost a committed grant when applying failed: %v", gs)
	}
}

func BenchmarkCommit(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), memstore.New(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		err := s.ReadWriteTx(b.Context(), func(ctx context.Context, tx catalog.RWTx) error {
			if err := tx.AddGrant(ctx, grant(i)); err != nil {
				return err
			}
			return tx.AppendAudit(ctx, catalog.AuditEvent{EventID: "x", Time: time.Now(), Action: "GRANT"})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func TestRotationUnderSteadyWrites(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	s, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, RotateBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return tx.AddGrant(ctx, grant(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	// The applier has applied the first three records while two more are
	// pending (steady writes): the log is rewritten with only those two.
	s.applyMu.Lock()
	s.mu.Lock()
	applied := s.pending[:3]
	s.mu.Unlock()
	err = inner.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		for _, r := range applied {
			for i := range r.Ops {
				if err := applyOp(ctx, tx, &r.Ops[i]); err != nil {
					return err
				}
			}
		}
		return tx.SetMeta(ctx, catalog.Meta{LogSeq: applied[2].Seq})
	})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	before := s.size
	s.pending = s.pending[3:]
	if err := s.rewrite(); err != nil {
		t.Fatal(err)
	}
	after := s.size
	s.mu.Unlock()
	s.applyMu.Unlock()
	if after >= before || after == 0 {
		t.Fatalf("log size %d -> %d after rotation", before, after)
	}
	crash(t, s)
	s2, err := Open(ctx, dir, inner, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if gs, _ := s2.ListGrants(ctx); len(gs) != 5 {
		t.Fatalf("grants after rotation and replay = %d, want 5", len(gs))
	}
}

func TestCorruptionInTheMiddleRefused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	s, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return tx.AddGrant(ctx, grant(i)) }); err != nil {
			t.Fatal(err)
		}
	}
	crash(t, s)
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[hdrSize+2] ^= 0xff // inside the first record's body
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, inner, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a log corrupt in the middle: %v, want a refusal", err)
	}
}
