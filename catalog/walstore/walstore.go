package walstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/internal/wal"
)

// Files in the data directory.
const (
	FileName     = "catalog.wal"
	SnapshotName = "catalog.snapshot"
)

// Body formats (the first byte of a record's body).
const (
	changesMagic  = 0xC1 // JSON array of catalog.Change
	snapshotMagic = 0xC2 // JSON of catalog.State
)

// rewriteMin: Prune rewrites the log only when it drops at least this many
// bytes or half the file (dropping less is not worth a copy).
const rewriteMin = 1 << 20

// Options configure a Store.
type Options struct {
	Logger zerolog.Logger
}

// Store is the embedded catalog.Store: change records in dir/catalog.wal,
// the newest snapshot in dir/catalog.snapshot.
type Store struct {
	dir  string
	path string
	log  zerolog.Logger

	mu     sync.Mutex // guards the fields below
	f      *os.File
	size   int64
	head   catalog.Revision
	frames []frame // the records of the log, oldest first
	snap   catalog.Revision
	closed bool

	snapMu sync.Mutex // one WriteSnapshot at a time
}

var _ catalog.Store = (*Store)(nil)

// frame is one record of the log: the changes first..last.
type frame struct {
	first, last catalog.Revision
	off, size   int64
}

// Open opens (creating them if needed) the log and snapshot in dir. A log
// that a Mandate whose catalog lived in DuckDB tables wrote is refused
// with CodeIncompatibleData: catalog/embedded upgrades such a directory
// first.
func Open(ctx context.Context, dir string, o Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog store: create data directory: " + err.Error(), Err: err}
	}
	s := &Store{dir: dir, path: filepath.Join(dir, FileName), log: o.Logger}
	snap, err := readSnapshotRevision(dir)
	if err != nil {
		return nil, err
	}
	s.snap, s.head = snap, snap
	_, statErr := os.Stat(s.path)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, catalog.Internal(err, "opening the catalog log")
	}
	if os.IsNotExist(statErr) {
		if err := wal.SyncDir(dir); err != nil { // the new file's name must survive a crash too
			f.Close()
			return nil, catalog.Internal(err, "syncing the data directory")
		}
	}
	if err := s.scan(f); err != nil {
		f.Close()
		return nil, err
	}
	s.f = f
	return s, nil
}

// scan reads the log's records, cuts off a torn tail and checks that the
// records continue the snapshot without a gap.
func (s *Store) scan(f *os.File) error {
	recs, good, err := wal.Read(f, -1)
	if err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Size() > good {
		s.log.Warn().Int64("bytes", st.Size()-good).Msg("catalog log: cut off a torn record at the end (never acknowledged)")
		if err := f.Truncate(good); err != nil {
			return catalog.Internal(err, "cutting off a torn catalog log record")
		}
	}
	s.size = good
	for _, r := range recs {
		if len(r.Body) == 0 || r.Body[0] != changesMagic {
			return &catalog.Error{Code: catalog.CodeIncompatibleData,
				Msg: fmt.Sprintf("catalog log %s holds records of an older Mandate (its catalog lived in DuckDB tables); start mandate serve on the data directory to upgrade it", s.path)}
		}
		changes, err := decodeChanges(r.Body)
		if err != nil {
			return catalog.Internal(err, fmt.Sprintf("catalog log record at offset %d is unreadable", r.Offset))
		}
		fr := frame{first: changes[0].Revision, last: changes[len(changes)-1].Revision, off: r.Offset, size: r.Size}
		if fr.last != catalog.Revision(r.Seq) {
			return catalog.Errorf(catalog.CodeIncompatibleData, "catalog log record at offset %d: sequence %d, last change %d", r.Offset, r.Seq, fr.last)
		}
		if n := len(s.frames); n > 0 && fr.first != s.frames[n-1].last+1 {
			return catalog.Errorf(catalog.CodeIncompatibleData, "catalog log: change %d follows change %d", fr.first, s.frames[n-1].last)
		}
		s.frames = append(s.frames, fr)
	}
	if n := len(s.frames); n > 0 {
		if s.frames[0].first > s.snap+1 {
			return catalog.Errorf(catalog.CodeIncompatibleData,
				"catalog log starts at change %d but the snapshot is of revision %d: changes are missing", s.frames[0].first, s.snap)
		}
		s.head = max(s.head, s.frames[n-1].last)
	}
	return nil
}

// decodeChanges decodes a record body of changes and checks that their
// revisions follow one another.
func decodeChanges(body []byte) ([]catalog.Change, error) {
	var cs []catalog.Change
	if err := json.Unmarshal(body[1:], &cs); err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, errors.New("a record without changes")
	}
	for i := 1; i < len(cs); i++ {
		if cs[i].Revision != cs[i-1].Revision+1 {
			return nil, fmt.Errorf("change %d follows change %d", cs[i].Revision, cs[i-1].Revision)
		}
	}
	return cs, nil
}

func errClosed() error { return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed") }

// Load implements catalog.Store.
func (s *Store) Load(ctx context.Context) (*catalog.State, []catalog.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	st, err := readSnapshot(s.dir)
	if err != nil {
		return nil, nil, err
	}
	changes, err := s.changes(ctx, st.Revision, 0)
	if err != nil {
		return nil, nil, err
	}
	return st, changes, nil
}

// Head implements catalog.Store.
func (s *Store) Head(ctx context.Context) (catalog.Revision, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errClosed()
	}
	return s.head, nil
}

// Append implements catalog.Store: the changes are one record of the log,
// durable (fsync'd) when Append returns.
func (s *Store) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	s.mu.Lock()
	head, closed := s.head, s.closed
	s.mu.Unlock()
	if closed {
		return errClosed()
	}
	if base != head {
		return catalog.Errorf(catalog.CodeConflict, "catalog store: revision %d is not the newest (%d is)", base, head)
	}
	for i := range changes {
		if changes[i].Revision != base+catalog.Revision(i)+1 {
			return catalog.Errorf(catalog.CodeInternal, "catalog store: change %d appended as revision %d", changes[i].Revision, base+catalog.Revision(i)+1)
		}
	}
	buf := append(make([]byte, wal.HeaderSize, wal.HeaderSize+1+512*len(changes)), changesMagic)
	body, err := json.Marshal(normalized(changes))
	if err != nil {
		return catalog.Internal(err, "encoding catalog changes")
	}
	buf = append(buf, body...)
	last := changes[len(changes)-1].Revision
	if err := wal.Seal(buf, int64(last)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	if base != s.head {
		return catalog.Errorf(catalog.CodeConflict, "catalog store: revision %d is not the newest (%d is)", base, s.head)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		return s.failAppend(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.failAppend(err)
	}
	s.frames = append(s.frames, frame{first: base + 1, last: last, off: s.size, size: int64(len(buf))})
	s.size += int64(len(buf))
	s.head = last
	return nil
}

// normalized returns the changes as every store returns them.
func normalized(changes []catalog.Change) []catalog.Change {
	out := make([]catalog.Change, len(changes))
	for i := range changes {
		out[i] = changes[i].Normalized()
	}
	return out
}

// failAppend cuts a partial record off and reports the failure. Caller
// holds s.mu.
func (s *Store) failAppend(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		s.log.Error().Err(terr).Msg("catalog log: cannot cut off a failed append; closing the store")
		s.closed = true
	}
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog log write failed; the change was not committed", Err: err}
}

// Changes implements catalog.Store.
func (s *Store) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.changes(ctx, after, limit)
}

func (s *Store) changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed()
	}
	if after >= s.head {
		return nil, nil
	}
	i := 0
	for i < len(s.frames) && s.frames[i].last <= after {
		i++
	}
	if i == len(s.frames) || s.frames[i].first > after+1 {
		return nil, catalog.ErrPruned
	}
	var out []catalog.Change
	for _, fr := range s.frames[i:] {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		body, err := wal.ReadAt(s.f, fr.off, fr.size)
		if err != nil {
			return nil, err
		}
		cs, err := decodeChanges(body)
		if err != nil {
			return nil, catalog.Internal(err, "reading the catalog log")
		}
		for _, c := range cs {
			if c.Revision > after {
				out = append(out, c)
				if limit > 0 && len(out) >= limit {
					return out, nil
				}
			}
		}
	}
	return out, nil
}

// WriteSnapshot implements catalog.Store: the snapshot is written to a
// temporary file, fsync'd and renamed over the previous one.
func (s *Store) WriteSnapshot(ctx context.Context, st *catalog.State) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	closed, head := s.closed, s.head
	s.mu.Unlock()
	if closed {
		return errClosed()
	}
	if st.Revision > head {
		return catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: snapshot of revision %d beyond the newest (%d)", st.Revision, head)
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err := writeSnapshotFile(s.dir, st); err != nil {
		return err
	}
	s.mu.Lock()
	s.snap = max(s.snap, st.Revision)
	s.mu.Unlock()
	return nil
}

// Prune implements catalog.Store: records up to through (and the
// snapshot's revision) are dropped by rewriting the log without them, when
// that drops enough to be worth it.
func (s *Store) Prune(ctx context.Context, through catalog.Revision) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed()
	}
	through = min(through, s.snap)
	keep := 0
	for keep < len(s.frames) && s.frames[keep].last <= through {
		keep++
	}
	if keep == 0 {
		return nil
	}
	if keep == len(s.frames) {
		if err := s.f.Truncate(0); err != nil {
			return catalog.Internal(err, "truncating the catalog log")
		}
		if err := s.f.Sync(); err != nil {
			return catalog.Internal(err, "truncating the catalog log")
		}
		s.frames, s.size = nil, 0
		return nil
	}
	from := s.frames[keep].off
	if from < rewriteMin && from < s.size/2 {
		return nil
	}
	return s.rewrite(keep)
}

// rewrite replaces the log with its records from frames[keep] on (temp
// file, fsync, rename, fsync of the directory). Caller holds s.mu.
func (s *Store) rewrite(keep int) error {
	from := s.frames[keep].off
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return catalog.Internal(err, "rewriting the catalog log")
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return catalog.Internal(err, "rewriting the catalog log")
	}
	if _, err := io.Copy(f, io.NewSectionReader(s.f, from, s.size-from)); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	if err := wal.SyncDir(s.dir); err != nil {
		s.log.Warn().Err(err).Msg("catalog log: fsync of the data directory failed")
	}
	old := s.f
	frames := make([]frame, 0, len(s.frames)-keep)
	for _, fr := range s.frames[keep:] {
		fr.off -= from
		frames = append(frames, fr)
	}
	s.f, s.frames, s.size = f, frames, s.size-from
	// The old log is no longer in the directory: closing it frees its
	// blocks, which takes tens of milliseconds for a large log (ext4), too
	// long to hold up the appends waiting for s.mu.
	go old.Close()
	return nil
}

// Close implements catalog.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}

// --- the snapshot file ---

// writeSnapshotFile writes st to dir/catalog.snapshot atomically and
// durably.
func writeSnapshotFile(dir string, st *catalog.State) error {
	buf := append(make([]byte, wal.HeaderSize, wal.HeaderSize+1+64*(len(st.Principals)+len(st.Securables)+len(st.Grants))), snapshotMagic)
	body, err := json.Marshal(st.Normalized())
	if err != nil {
		return catalog.Internal(err, "encoding the catalog snapshot")
	}
	buf = append(buf, body...)
	if err := wal.Seal(buf, int64(st.Revision)); err != nil {
		return err
	}
	path := filepath.Join(dir, SnapshotName)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return catalog.Internal(err, "writing the catalog snapshot")
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "writing the catalog snapshot failed", Err: err}
	}
	if err := wal.SyncDir(dir); err != nil {
		return catalog.Internal(err, "syncing the data directory")
	}
	return nil
}

// readSnapshot reads dir/catalog.snapshot (an empty State at revision 0
// when there is none).
func readSnapshot(dir string) (*catalog.State, error) {
	body, rev, err := readSnapshotBody(dir)
	if err != nil || body == nil {
		return &catalog.State{}, err
	}
	var st catalog.State
	if err := json.Unmarshal(body[1:], &st); err != nil {
		return nil, catalog.Internal(err, "reading the catalog snapshot")
	}
	if st.Revision != rev {
		return nil, catalog.Errorf(catalog.CodeIncompatibleData, "catalog snapshot: revision %d in a file of revision %d", st.Revision, rev)
	}
	return &st, nil
}

func readSnapshotRevision(dir string) (catalog.Revision, error) {
	_, rev, err := readSnapshotBody(dir)
	return rev, err
}

func readSnapshotBody(dir string) ([]byte, catalog.Revision, error) {
	path := filepath.Join(dir, SnapshotName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, catalog.Internal(err, "reading the catalog snapshot")
	}
	defer f.Close()
	recs, end, err := wal.Read(f, -1)
	if err != nil {
		return nil, 0, err
	}
	st, serr := f.Stat()
	if len(recs) != 1 || serr != nil || end != st.Size() || len(recs[0].Body) == 0 || recs[0].Body[0] != snapshotMagic {
		return nil, 0, catalog.Errorf(catalog.CodeIncompatibleData, "catalog snapshot %s is damaged; refusing to start", path)
	}
	return recs[0].Body, catalog.Revision(recs[0].Seq), nil
}

// HasSnapshot reports whether dir holds a catalog snapshot.
func HasSnapshot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, SnapshotName))
	return err == nil
}

// WriteSnapshot writes st as the snapshot of the catalog in dir (the
// upgrade of an older data directory, before Open).
func WriteSnapshot(dir string, st *catalog.State) error { return writeSnapshotFile(dir, st) }
