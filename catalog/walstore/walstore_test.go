package walstore

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/internal/wal"
	"github.com/mandatehq/mandate/catalog/storetest"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) catalog.Store { return openT(t, t.TempDir()) })
}

func TestStoreDurability(t *testing.T) {
	storetest.RunStoreDurability(t, func(t *testing.T, dir string) catalog.Store { return openT(t, dir) })
}

func grantChange(rev catalog.Revision) catalog.Change {
	return catalog.Change{Revision: rev, NextID: 10, Ops: []catalog.ChangeOp{{Kind: catalog.OpAddGrant,
		Grant: &catalog.Grant{Securable: 1, Principal: catalog.ID(rev), Privilege: catalog.PrivBrowse, Grantor: 1}}},
		Audit: []catalog.AuditEvent{{EventID: fmt.Sprint("e", rev), Time: time.Now(), Action: "GRANT", Revision: rev}}}
}

func appendN(t *testing.T, s *Store, from, to catalog.Revision) {
	t.Helper()
	for r := from; r <= to; r++ {
		if err := s.Append(t.Context(), r-1, []catalog.Change{grantChange(r)}); err != nil {
			t.Fatal(err)
		}
	}
}

// A torn record at the end (a crash during an append) is cut off; the
// acknowledged records before it stay.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	appendN(t, s, 1, 5)
	s.Close()
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, changesMagic, '['}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = openT(t, dir)
	defer s.Close()
	if h, _ := s.Head(t.Context()); h != 5 {
		t.Fatalf("Head after a torn tail = %d, want 5", h)
	}
	appendN(t, s, 6, 6)
	cs, err := s.Changes(t.Context(), 0, 0)
	if err != nil || len(cs) != 6 {
		t.Fatalf("Changes = %d, %v; want 6", len(cs), err)
	}
}

func TestCorruptionRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	appendN(t, s, 1, 3)
	s.Close()
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[wal.HeaderSize+3] ^= 0xff // inside the first record
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a log corrupt in the middle: %v, want a refusal", err)
	}
	// A damaged snapshot is refused too.
	dir2 := t.TempDir()
	if err := WriteSnapshot(dir2, &catalog.State{Revision: 0}); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir2, SnapshotName)
	b, _ = os.ReadFile(snap)
	if err := os.WriteFile(snap, b[:len(b)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir2, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open with a cut snapshot: %v, want a refusal", err)
	}
}

// A log whose records start after the snapshot's revision + 1 lost
// changes: refused.
func TestGapRefused(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	appendN(t, s, 1, 4)
	st, changes, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	full, err := catalog.Replay(st, changes)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	full.Revision = 1 // a snapshot older than the log's first record - 1 would be
	if err := WriteSnapshot(dir, full); err != nil {
		t.Fatal(err)
	}
	// Drop the first record from the log by hand.
	path := filepath.Join(dir, FileName)
	f, _ := os.Open(path)
	recs, _, _ := wal.Read(f, 0)
	f.Close()
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[recs[2].Offset:], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a log with a gap after the snapshot: %v, want a refusal", err)
	}
}

// Prune rewrites the log without the records the snapshot covers; the
// store keeps working and reopens to the same catalog.
func TestPruneRewrites(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openT(t, dir)
	// Large records, so that the pruned part passes rewriteMin.
	big := func(rev catalog.Revision) catalog.Change {
		c := grantChange(rev)
		c.Audit[0].RequestParams = fmt.Sprintf(`{"pad":"%0200000d"}`, 0)
		return c
	}
	for r := catalog.Revision(1); r <= 12; r++ {
		if err := s.Append(ctx, r-1, []catalog.Change{big(r)}); err != nil {
			t.Fatal(err)
		}
	}
	st, changes, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at10, err := catalog.Replay(st, changes[:10])
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(dir, FileName))
	if err := s.WriteSnapshot(ctx, at10); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(ctx, 10); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, FileName))
	if after.Size() >= before.Size()/4 {
		t.Fatalf("log %d bytes after pruning 10 of 12 records (was %d)", after.Size(), before.Size())
	}
	if _, err := s.Changes(ctx, 5, 0); !catalog.IsPruned(err) {
		t.Fatalf("Changes(5) after Prune(10): %v, want ErrPruned", err)
	}
	appendN(t, s, 13, 14)
	want, err := catalog.Replay(st, append(changes, grantChange(13), grantChange(14)))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	defer s.Close()
	st2, rest, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Revision != 10 || len(rest) != 4 || rest[0].Revision != 11 {
		t.Fatalf("after reopening: snapshot %d, records %d", st2.Revision, len(rest))
	}
	got, err := catalog.Replay(st2, rest)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Grants) != len(want.Grants) || got.Revision != 14 {
		t.Fatalf("reloaded %d grants at %d, want %d at 14", len(got.Grants), got.Revision, len(want.Grants))
	}
}

// A log in the format of the Mandate whose catalog lived in DuckDB tables
// is refused by Open and read by ReadLegacy.
func TestLegacyLog(t *testing.T) {
	dir := t.TempDir()
	var file []byte
	add := func(seq int64, body []byte) {
		buf := append(make([]byte, wal.HeaderSize), body...)
		if err := wal.Seal(buf, seq); err != nil {
			t.Fatal(err)
		}
		file = append(file, buf...)
	}
	ev := catalog.AuditEvent{EventID: "e1", Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Action: "GRANT", Revision: 7}
	add(3, []byte(`{"seq":3,"ops":[{"k":"add_grant","g":{"Securable":2,"Principal":3,"Privilege":"USE_CATALOG","Grantor":1}},`+
		`{"k":"audit","a":[{"EventID":"e1","Time":"2025-01-02T03:04:05Z","Action":"GRANT","Revision":7}]},`+
		`{"k":"meta","mt":{"Revision":7,"NextID":12,"LogSeq":0}}],"meta":{"Revision":7,"NextID":12,"LogSeq":0}}`))
	add(4, wal.AppendAudit(nil, []catalog.AuditEvent{{EventID: "e2", Time: ev.Time, Action: "tools/call"}}))
	if err := os.WriteFile(filepath.Join(dir, FileName), file, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a legacy log: %v, want a refusal", err)
	}
	recs, legacy, err := ReadLegacy(dir, 2)
	if err != nil || !legacy || len(recs) != 2 {
		t.Fatalf("ReadLegacy = %d records, %v, %v", len(recs), legacy, err)
	}
	if r := recs[0]; r.Seq != 3 || len(r.Ops) != 1 || r.Ops[0].Grant == nil || r.Ops[0].Grant.Principal != 3 ||
		len(r.Audit) != 1 || r.Audit[0] != ev || r.Meta == nil || r.Meta.NextID != 12 {
		t.Fatalf("record 3 = %+v", r)
	}
	if r := recs[1]; len(r.Audit) != 1 || r.Audit[0].EventID != "e2" || len(r.Ops) != 0 {
		t.Fatalf("record 4 = %+v", r)
	}
	if recs, _, _ := ReadLegacy(dir, 3); len(recs) != 1 {
		t.Fatalf("records after 3: %d, want 1", len(recs))
	}
	if err := RemoveLegacy(dir); err != nil {
		t.Fatal(err)
	}
	s := openT(t, dir)
	s.Close()
	// A log of the current format is not legacy.
	if _, legacy, err := ReadLegacy(dir, 0); legacy || err != nil {
		t.Fatalf("ReadLegacy of an empty log: %v, %v", legacy, err)
	}
}

func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rev := catalog.Revision(0)
	for b.Loop() {
		if err := s.Append(b.Context(), rev, []catalog.Change{grantChange(rev + 1)}); err != nil {
			b.Fatal(err)
		}
		rev++
	}
}
