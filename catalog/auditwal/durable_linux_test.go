package auditwal

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// durableAppender appends a record and makes it durable with one
// primitive of the filesystem (BenchmarkDurableAppend).
type durableAppender interface {
	// prepare readies the space after off for the next appends (outside
	// the measured time, like the log's background preallocation).
	prepare(off int64) error
	appendDurable(off int64, p []byte) error
	close() error
}

// benchChunk is the space a variant prepares at once (preallocAhead).
const benchChunk = preallocAhead

// syncAppender writes with pwrite and makes the data durable with
// fdatasync; prep readies the space ahead (nil: the file is extended).
type syncAppender struct {
	f     *os.File
	alloc int64
	prep  func(f *os.File, off, n int64) error
}

func (a *syncAppender) prepare(off int64) error {
	if a.prep == nil || a.alloc-off >= benchChunk/2 {
		return nil
	}
	if err := a.prep(a.f, a.alloc, benchChunk); err != nil {
		return err
	}
	a.alloc += benchChunk
	return datasync(a.f)
}

func (a *syncAppender) appendDurable(off int64, p []byte) error {
	if _, err := a.f.WriteAt(p, off); err != nil {
		return err
	}
	return datasync(a.f)
}

func (a *syncAppender) close() error { return a.f.Close() }

// dsyncAppender writes with pwrite on an O_DSYNC descriptor into space
// written with zeros first.
type dsyncAppender struct {
	f     *os.File // O_DSYNC
	alloc int64
}

func (a *dsyncAppender) prepare(off int64) error {
	if a.alloc-off >= benchChunk/2 {
		return nil
	}
	if err := writeZeros(a.f, a.alloc, benchChunk); err != nil {
		return err
	}
	a.alloc += benchChunk
	return nil
}

func (a *dsyncAppender) appendDurable(off int64, p []byte) error {
	_, err := a.f.WriteAt(p, off)
	return err
}

func (a *dsyncAppender) close() error { return a.f.Close() }

// BenchmarkDurableAppend measures the durable append primitives on the
// disk of the test's temporary directory (set TMPDIR to a directory on
// the data directory's filesystem): each op appends 300..2000
// bytes (an audit record) and makes it durable. Run with -count for
// several rounds. Each op appends once with every variant, so the
// variants alternate within a run (the preparation of the space ahead is
// timed too, but not counted in the percentiles).
//
//	extend:    append past the end, fdatasync (a size change to commit)
//	fallocate: fdatasync into fallocated space (unwritten extents)
//	zeros:     fdatasync into space written with zeros
//	odsync:    pwrite on an O_DSYNC descriptor into zeros
func BenchmarkDurableAppend(b *testing.B) {
	b.Run("alone", func(b *testing.B) { benchDurableAppend(b) })
	// A neighbor that commits the filesystem's journal all the time (it
	// extends a file of its own and fsyncs it, as DuckDB's log does).
	b.Run("journal-neighbor", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "neighbor"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			chunk := make([]byte, 16<<10)
			for off := int64(0); ; off += int64(len(chunk)) {
				select {
				case <-stop:
					return
				default:
				}
				if off > 64<<20 {
					off = 0
					_ = f.Truncate(0)
				}
				if _, err := f.WriteAt(chunk, off); err != nil {
					return
				}
				_ = f.Sync()
			}
		}()
		defer func() { close(stop); <-stopped }()
		benchDurableAppend(b)
	})
}

// benchDurableAppend reports each variant's p50 and p99 per append.
func benchDurableAppend(b *testing.B) {
	open := func(b *testing.B, flags int) *os.File {
		b.Helper()
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "bench.wal"), os.O_RDWR|os.O_CREATE|flags, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		if err := datasync(f); err != nil {
			b.Fatal(err)
		}
		return f
	}
	variants := []struct {
		name string
		new  func(b *testing.B) durableAppender
	}{
		{"extend", func(b *testing.B) durableAppender { return &syncAppender{f: open(b, 0)} }},
		{"fallocate", func(b *testing.B) durableAppender { return &syncAppender{f: open(b, 0), prep: allocate} }},
		{"zeros", func(b *testing.B) durableAppender { return &syncAppender{f: open(b, 0), prep: writeZeros} }},
		{"odsync", func(b *testing.B) durableAppender { return &dsyncAppender{f: open(b, unix.O_DSYNC)} }},
	}
	apps := make([]durableAppender, len(variants))
	offs := make([]int64, len(variants))
	lat := make([][]time.Duration, len(variants))
	for i, v := range variants {
		apps[i] = v.new(b)
		defer apps[i].close()
		lat[i] = make([]time.Duration, 0, b.N)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rec := make([]byte, 2000)
	for i := range rec {
		rec[i] = byte(i) | 1
	}
	b.ResetTimer()
	for n := range b.N {
		p := rec[:300+rng.IntN(1701)]
		// Each op appends p once with every variant, in an order that
		// rotates, so that the variants share the disk's moods alike.
		for k := range variants {
			i := (n + k) % len(variants)
			if err := apps[i].prepare(offs[i]); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := apps[i].appendDurable(offs[i], p); err != nil {
				b.Fatal(err)
			}
			lat[i] = append(lat[i], time.Since(t0))
			offs[i] += int64(len(p))
		}
	}
	b.StopTimer()
	for i, v := range variants {
		ReportLatencies(b, v.name, lat[i])
	}
}
