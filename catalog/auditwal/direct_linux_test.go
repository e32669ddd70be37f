package auditwal

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// TestDirectWriter: appends of every size across block boundaries, with
// and without RWF_DSYNC, leave the file holding exactly what was
// appended (zeros after it, to the end of a block), also after the file
// was cut short behind the writer's back (the log emptied, a failed
// append cut off), which the next append notices.
func TestDirectWriter(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
		cutAt map[int]int64 // before append i, the file is truncated to this
	}{
		{"small", []int{1, 2, 3, 100, 7}, nil},
		{"block boundaries", []int{4095, 1, 4096, 4097, 8191, 2}, nil},
		{"large", []int{10000, 300, 70000, 5}, nil},
		{"emptied", []int{500, 600, 700, 800}, map[int]int64{2: 0}},
		{"cut to a partial block", []int{3000, 3000, 3000}, map[int]int64{2: 3500}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			f, d := openTestDirect(t, path)
			if d == nil {
				t.Skip("the filesystem of the test's temporary directory refuses O_DIRECT")
			}
			rng := rand.New(rand.NewPCG(7, 7))
			var want []byte
			for i, n := range tt.sizes {
				if at, ok := tt.cutAt[i]; ok {
					if err := f.Truncate(at); err != nil {
						t.Fatal(err)
					}
					want = want[:at]
				}
				p := make([]byte, n)
				for j := range p {
					p[j] = byte(rng.IntN(255) + 1)
				}
				flags := 0
				if i%2 == 0 {
					flags = rwfDSync
				}
				end, err := d.write(f, int64(len(want)), flags, p...)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, p...)
				if end%directBlock != 0 || end < int64(len(want)) || end >= int64(len(want))+directBlock {
					t.Fatalf("append %d: blocks written to %d, want the end of the block holding %d", i, end, len(want))
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
				t.Fatalf("file holds %d bytes, not the %d appended", len(got), len(want))
			}
			if rest := got[len(want):]; len(rest) >= directBlock || bytes.ContainsFunc(rest, func(r rune) bool { return r != 0 }) {
				t.Fatalf("%d bytes after the appended ones, not all zeros within the last block", len(rest))
			}
		})
	}
}

// TestDirectAppendsSurviveCrash: a log written with direct appends (the
// default where the filesystem allows them), durable and lazy records of
// many sizes, emptied once by an apply, is read back whole after a crash.
func TestDirectAppendsSurviveCrash(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	o := Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, ApplyDelay: -1, Direct: true}
	l, err := Open(ctx, dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	if l.direct == nil {
		t.Skip("the filesystem of the test's temporary directory refuses O_DIRECT")
	}
	var want []catalog.AuditEvent
	appendSome := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			events := make([]catalog.AuditEvent, 1+i%7)
			for j := range events {
				events[j] = event(i*10 + j)
			}
			if err := l.appendEvents(context.Background(), events, i%3 != 0); err != nil {
				t.Fatal(err)
			}
			want = append(want, events...)
		}
	}
	appendSome(0, 40)
	if err := l.Flush(ctx); err != nil { // applied: the log is emptied
		t.Fatal(err)
	}
	if end(l) != 0 {
		t.Fatalf("log not emptied by the apply: %d bytes", end(l))
	}
	appendSome(40, 60)
	if err := l.syncNow(); err != nil { // the lazy records' fsync
		t.Fatal(err)
	}
	reopenAfterCrash(t, l, dir, inner, o, want)
}

// TestDirectOnlyWhenAppendsSync: the log appends with O_DIRECT only when
// appends wait for their sync (not with SyncInterval, where a direct
// write would cost a disk write per append for nothing).
func TestDirectOnlyWhenAppendsSync(t *testing.T) {
	tests := []struct {
		name   string
		o      Options
		direct bool
	}{
		{"sync on", Options{Direct: true}, true},
		{"sync off", Options{SyncInterval: time.Hour, Direct: true}, false},
		{"not asked for", Options{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(t.Context(), t.TempDir(), keepOpen{memstore.New()}, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := l.AppendAudit(t.Context(), event(1)); err != nil {
				t.Fatal(err)
			}
			if tt.direct && !directAllowed(t) {
				t.Skip("the filesystem of the test's temporary directory refuses O_DIRECT")
			}
			if got := l.direct != nil; got != tt.direct {
				t.Fatalf("direct appends: %v, want %v", got, tt.direct)
			}
		})
	}
}

// directAllowed reports whether the filesystem of the test's temporary
// directory takes direct appends.
func directAllowed(t *testing.T) bool {
	t.Helper()
	_, d := openTestDirect(t, filepath.Join(t.TempDir(), "probe"))
	return d != nil
}

// openTestDirect creates the file at path and opens it for direct
// appends (nil where the filesystem refuses them); both are closed when
// the test ends.
func openTestDirect(t *testing.T, path string) (*os.File, *directWriter) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d, err := openDirect(path, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d != nil {
		t.Cleanup(func() { d.close() })
	}
	return f, d
}
