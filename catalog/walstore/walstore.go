package walstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// FileName is the log file in the data directory.
const FileName = "catalog.wal"

// maxRecord bounds one record (a corrupt length must not allocate gigabytes).
const maxRecord = 1 << 30

// hdrSize is the record header: length, CRC, sequence number.
const hdrSize = 16

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Options configure the log.
type Options struct {
	Logger zerolog.Logger
	// ApplyInterval is how often pending records are applied (default 200ms).
	ApplyInterval time.Duration
	// MaxPending applies as soon as this many records wait (default 256).
	MaxPending int
	// ApplyDelay: the background applier leaves records younger than this
	// pending (default 100ms; negative: none), so that a gateway call's
	// audit completion, which follows its request within milliseconds,
	// is merged into the request's row before the inner store sees it
	// instead of updating it there. Reads and Flush apply everything.
	ApplyDelay time.Duration
	// RotateBytes rewrites the log once this many bytes of it are applied
	// while new records keep it from being truncated (default 64 MiB).
	RotateBytes int64
	// MaxPendingBytes bounds the records logged but not yet applied to the
	// inner store (default 256 MiB), which are also held in memory: past
	// it, new transactions wait (within their context) until the applier
	// has caught up. Sustained audit ingestion faster than the inner store
	// can apply it is slowed down instead of exhausting memory.
	MaxPendingBytes int64
}

// Store is a catalog.Store with a write-ahead log in front of inner.
type Store struct {
	inner catalog.Store
	path  string
	log   zerolog.Logger
	opts  Options

	wlock chan struct{} // one ReadWriteTx at a time

	mu       sync.Mutex // guards the fields below
	f        *os.File
	size     int64
	seq      int64        // last appended record
	meta     catalog.Meta // latest meta, pending records included
	pending  []*record
	live     int64         // framed bytes of the pending records
	applied  chan struct{} // closed (and replaced) whenever records were applied
	applyErr error

	applyMu sync.Mutex // serializes applying
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	closed  atomic.Bool
	once    sync.Once
}

var _ catalog.Store = (*Store)(nil)

// record is one committed transaction.
type record struct {
	size int64         // framed size in the log
	at   time.Time     // when it was appended (zero: replayed)
	Seq  int64         `json:"seq"`
	Ops  []op          `json:"ops"`
	Meta *catalog.Meta `json:"meta,omitempty"` // meta after this record
}

// op is one write. Exactly one payload field is set, named by K.
type op struct {
	K  string               `json:"k"`
	P  *catalog.Principal   `json:"p,omitempty"`
	S  *catalog.Securable   `json:"s,omitempty"`
	M  *catalog.Membership  `json:"m,omitempty"`
	G  *catalog.Grant       `json:"g,omitempty"`
	GK *catalog.GrantKey    `json:"gk,omitempty"`
	ID catalog.ID           `json:"id,omitempty"`
	A  []catalog.AuditEvent `json:"a,omitempty"`
	MT *catalog.Meta        `json:"mt,omitempty"`
}

// Open opens (creating if needed) dir/catalog.wal in front of inner and
// replays records inner has not applied yet.
func Open(ctx context.Context, dir string, inner catalog.Store, o Options) (*Store, error) {
	if o.ApplyInterval <= 0 {
		o.ApplyInterval = 200 * time.Millisecond
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 256
	}
	if o.ApplyDelay == 0 {
		o.ApplyDelay = 100 * time.Millisecond
	}
	if o.RotateBytes <= 0 {
		o.RotateBytes = 64 << 20
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 256 << 20
	}
	s := &Store{inner: inner, path: filepath.Join(dir, FileName), log: o.Logger, opts: o,
		wlock: make(chan struct{}, 1), kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
		applied: make(chan struct{})}
	meta, err := inner.Meta(ctx)
	if err != nil {
		return nil, err
	}
	s.meta = meta
	s.seq = meta.LogSeq
	_, statErr := os.Stat(s.path)
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, catalog.Internal(err, "opening the catalog log")
	}
	if os.IsNotExist(statErr) {
		if err := syncDir(dir); err != nil { // the new file's name must survive a crash too
			f.Close()
			return nil, catalog.Internal(err, "syncing the data directory")
		}
	}
	s.f = f
	recs, good, err := readLog(f, meta.LogSeq)
	if err != nil {
		f.Close()
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() > good {
		s.log.Warn().Int64("bytes", st.Size()-good).Msg("catalog log: cut off a torn record at the end (never acknowledged)")
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, catalog.Internal(err, "cutting off a torn catalog log record")
		}
	}
	s.size = good
	for _, r := range recs {
		if r.Seq <= meta.LogSeq {
			continue
		}
		s.pending = append(s.pending, r)
		s.live += r.size
		s.seq = r.Seq
		if r.Meta != nil {
			s.meta = *r.Meta
		}
	}
	if len(s.pending) > 0 {
		s.log.Info().Int("records", len(s.pending)).Msg("catalog log: replaying committed records")
	}
	if err := s.flush(ctx); err != nil {
		f.Close()
		return nil, err
	}
	go s.applier()
	return s, nil
}

// readLog reads every intact record and returns the offset after the last one.
func readLog(f *os.File, skipThrough int64) ([]*record, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, catalog.Internal(err, "reading the catalog log")
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var (
		recs []*record
		off  int64
		hdr  [hdrSize]byte
	)
	st, err := f.Stat()
	if err != nil {
		return nil, 0, catalog.Internal(err, "reading the catalog log")
	}
	size := st.Size()
	// A bad record is a torn tail (a crash during an append that was never
	// acknowledged) only if it is the last thing in the file; anything after
	// it means corruption, which must not silently drop acknowledged data.
	torn := func(end int64) ([]*record, int64, error) {
		if end < size {
			return nil, 0, &catalog.Error{Code: catalog.CodeIncompatibleData,
				Msg: fmt.Sprintf("catalog log %s is corrupt at offset %d (%d bytes follow); refusing to start", f.Name(), off, size-off)}
		}
		return recs, off, nil
	}
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return recs, off, nil // EOF or a torn header at the end
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if n > maxRecord {
			return torn(off + hdrSize)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return recs, off, nil
		}
		end := off + hdrSize + int64(n)
		c := crc32.Update(crc32.Checksum(hdr[8:], crcTable), crcTable, body)
		if c != binary.LittleEndian.Uint32(hdr[4:8]) {
			return torn(end)
		}
		seq := int64(binary.LittleEndian.Uint64(hdr[8:]))
		if seq <= skipThrough {
			off = end // already applied: no need to decode
			continue
		}
		r, err := decodeBody(body)
		if err != nil {
			return nil, 0, catalog.Internal(err, fmt.Sprintf("catalog log record at offset %d is unreadable", off))
		}
		r.Seq = seq
		r.size = hdrSize + int64(n)
		recs = append(recs, r)
		off = end
	}
}

// encode frames a record: [length u32][CRC-32C of seq+body u32][seq u64][body].
// The body is JSON, or binary for a record of audit events only (see
// auditcodec.go).
func encode(r *record) ([]byte, error) {
	var buf []byte
	if events, ok := auditOnly(r); ok {
		buf = appendAudit(make([]byte, hdrSize, hdrSize+auditSize(events)), events)
	} else {
		body, err := json.Marshal(r)
		if err != nil {
			return nil, catalog.Internal(err, "encoding a catalog log record")
		}
		buf = append(make([]byte, hdrSize, hdrSize+len(body)), body...)
	}
	body := buf[hdrSize:]
	if len(body) > maxRecord {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "catalog log record of %d bytes is larger than the limit of %d", len(body), maxRecord)
	}
	binary.LittleEndian.PutUint32(buf[:4], uint32(len(body)))
	binary.LittleEndian.PutUint64(buf[8:], uint64(r.Seq))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Update(crc32.Checksum(buf[8:hdrSize], crcTable), crcTable, body))
	return buf, nil
}

// decodeBody decodes a record body written by encode (Seq and size are
// set by the caller).
func decodeBody(body []byte) (*record, error) {
	if len(body) > 0 && (body[0] == auditMagic || body[0] == auditMagic2 || body[0] == auditMagic3) {
		events, err := decodeAudit(body)
		if err != nil {
			return nil, err
		}
		return &record{Ops: []op{{K: "audit", A: events}}}, nil
	}
	var r record
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Store) checkOpen() error {
	if s.closed.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed")
	}
	return nil
}

// ReadWriteTx implements catalog.Store: the transaction is durable in the
// log when it returns.
func (s *Store) ReadWriteTx(ctx context.Context, fn func(ctx context.Context, tx catalog.RWTx) error) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.waitRoom(ctx); err != nil {
		return err
	}
	select {
	case s.wlock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed")
	}
	defer func() { <-s.wlock }()
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	meta := s.meta
	s.mu.Unlock()
	tx := &recTx{s: s, meta: meta}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if tx.err != nil {
		return tx.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(tx.ops) == 0 {
		return nil
	}
	return s.appendRecord(tx)
}

func (s *Store) appendRecord(tx *recTx) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &record{Seq: s.seq + 1, Ops: tx.ops, at: time.Now()}
	if tx.metaSet {
		m := tx.meta
		r.Meta = &m
	}
	buf, err := encode(r)
	if err != nil {
		return err
	}
	r.size = int64(len(buf))
	if _, err := s.f.WriteAt(buf, s.size); err != nil {
		return s.failAppend(err)
	}
	if err := s.f.Sync(); err != nil {
		return s.failAppend(err)
	}
	s.size += int64(len(buf))
	s.seq = r.Seq
	if r.Meta != nil {
		s.meta = *r.Meta
	}
	s.pending = append(s.pending, r)
	s.live += r.size
	if len(s.pending) >= s.opts.MaxPending || s.live > s.opts.MaxPendingBytes/2 {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitRoom waits while more than MaxPendingBytes wait to be applied.
func (s *Store) waitRoom(ctx context.Context) error {
	for {
		s.mu.Lock()
		over, applied := s.live > s.opts.MaxPendingBytes, s.applied
		s.mu.Unlock()
		if !over {
			return nil
		}
		select {
		case s.kick <- struct{}{}:
		default:
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return &catalog.Error{Code: catalog.CodeUnavailable, Err: ctx.Err(),
				Msg: "catalog log: too much is waiting to be applied to the store; try again later"}
		case <-s.done:
			return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed")
		}
	}
}

// failAppend cuts a partial record off and reports the failure.
func (s *Store) failAppend(err error) error {
	if terr := s.f.Truncate(s.size); terr != nil {
		s.log.Error().Err(terr).Msg("catalog log: cannot cut off a failed append; closing the store")
		s.closed.Store(true)
	}
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog log write failed; the change was not committed", Err: err}
}

func (s *Store) applier() {
	defer close(s.stopped)
	t := time.NewTicker(s.opts.ApplyInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := s.apply(ctx, time.Now().Add(-s.opts.ApplyDelay)); err != nil {
			s.log.Error().Err(err).Msg("catalog log: applying to the store failed; will retry (the log keeps the data)")
		}
		cancel()
	}
}

// flush applies every pending record to the inner store, then truncates the
// log if nothing new arrived meanwhile.
func (s *Store) flush(ctx context.Context) error { return s.apply(ctx, time.Time{}) }

// apply applies the pending records appended before before (all of them
// for a zero time), oldest first.
func (s *Store) apply(ctx context.Context, before time.Time) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	n := len(s.pending)
	if !before.IsZero() {
		for n > 0 && s.pending[n-1].at.After(before) {
			n--
		}
	}
	batch := append([]*record(nil), s.pending[:n]...)
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	last := batch[len(batch)-1]
	// The meta as of the last record: the newest meta in the batch, or the
	// one before it.
	var meta *catalog.Meta
	for i := len(batch) - 1; i >= 0 && meta == nil; i-- {
		meta = batch[i].Meta
	}
	err := s.inner.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		m, err := tx.Meta(ctx)
		if err != nil {
			return err
		}
		for _, r := range batch {
			for i := range r.Ops {
				if err := applyOp(ctx, tx, &r.Ops[i]); err != nil {
					return err
				}
			}
		}
		if meta != nil {
			m.Revision, m.NextID = meta.Revision, meta.NextID
		}
		m.LogSeq = last.Seq
		return tx.SetMeta(ctx, m)
	})
	if err != nil {
		s.mu.Lock()
		s.applyErr = err
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyErr = nil
	for _, r := range batch {
		s.live -= r.size
	}
	close(s.applied)
	s.applied = make(chan struct{})
	s.pending = s.pending[len(batch):]
	if len(s.pending) == 0 && s.size > 0 {
		if err := s.f.Truncate(0); err == nil {
			s.size = 0
			_ = s.f.Sync()
		}
		return nil
	}
	// Under steady writes the log never empties: once the applied prefix is
	// large, rewrite the log with only the pending records.
	if s.size-s.live > s.opts.RotateBytes {
		if err := s.rewrite(); err != nil {
			s.log.Error().Err(err).Msg("catalog log: rotation failed; will retry")
		}
	}
	return nil
}

// rewrite replaces the log with one holding only the pending records
// (temp file, fsync, rename, fsync of the directory). Caller holds s.mu.
func (s *Store) rewrite() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	var size int64
	for _, r := range s.pending {
		buf, err := encode(r)
		if err == nil {
			_, err = f.WriteAt(buf, size)
		}
		if err != nil {
			f.Close()
			os.Remove(tmp)
			return err
		}
		size += int64(len(buf))
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		s.log.Warn().Err(err).Msg("catalog log: fsync of the data directory failed")
	}
	// The old log is no longer in the directory: closing it frees its
	// blocks, which takes tens of milliseconds for a large log (ext4), too
	// long to hold up the appends waiting for s.mu.
	go s.f.Close()
	s.f, s.size = f, size
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func applyOp(ctx context.Context, tx catalog.RWTx, o *op) error {
	switch o.K {
	case "put_principal":
		return tx.PutPrincipal(ctx, *o.P)
	case "delete_principal":
		return tx.DeletePrincipal(ctx, o.ID)
	case "add_member":
		return tx.AddMembership(ctx, *o.M)
	case "remove_member":
		return tx.RemoveMembership(ctx, *o.M)
	case "put_securable":
		return tx.PutSecurable(ctx, *o.S)
	case "delete_securable":
		return tx.DeleteSecurable(ctx, o.ID)
	case "add_grant":
		return tx.AddGrant(ctx, *o.G)
	case "remove_grant":
		return tx.RemoveGrant(ctx, *o.GK)
	case "audit":
		return tx.AppendAudit(ctx, o.A...)
	case "meta":
		return nil // folded into the batch's final SetMeta
	}
	return catalog.Errorf(catalog.CodeInternal, "catalog log: unknown operation %q", o.K)
}

// Close applies what is pending and closes the log and the inner store.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.wlock <- struct{}{} // wait for a running transaction
		s.closed.Store(true)
		close(s.done)
		<-s.stopped
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if ferr := s.flush(ctx); ferr != nil {
			s.log.Error().Err(ferr).Msg("catalog log: could not apply pending records at close; they stay in the log")
		}
		err = errors.Join(s.f.Close(), s.inner.Close())
	})
	return err
}

// --- reads: apply pending first ---

func (s *Store) ready(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	return s.flush(ctx)
}

// Meta implements catalog.Reader (LogSeq is internal and reported as 0).
func (s *Store) Meta(ctx context.Context) (catalog.Meta, error) {
	if err := s.checkOpen(); err != nil {
		return catalog.Meta{}, err
	}
	if err := ctx.Err(); err != nil {
		return catalog.Meta{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.meta
	m.LogSeq = 0
	return m, nil
}

// ListPrincipals implements catalog.Reader.
func (s *Store) ListPrincipals(ctx context.Context) ([]catalog.Principal, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s.inner.ListPrincipals(ctx)
}

// ListMemberships implements catalog.Reader.
func (s *Store) ListMemberships(ctx context.Context) ([]catalog.Membership, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s.inner.ListMemberships(ctx)
}

// ListSecurables implements catalog.Reader.
func (s *Store) ListSecurables(ctx context.Context) ([]catalog.Securable, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s.inner.ListSecurables(ctx)
}

// ListGrants implements catalog.Reader.
func (s *Store) ListGrants(ctx context.Context) ([]catalog.Grant, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s.inner.ListGrants(ctx)
}

// ListAudit implements catalog.AuditReader.
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) ([]catalog.AuditEvent, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	return s.inner.ListAudit(ctx, since, limit)
}

// AppendAudit implements catalog.AuditWriter (durable through the log).
func (s *Store) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	return s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return tx.AppendAudit(ctx, events...) })
}

// Flush applies every pending record to the inner store now. A reader of
// the inner store that bypasses this Store (a query engine on DuckDB's own
// connections) calls it first to see every committed write: records are
// otherwise applied every ApplyInterval, later under load.
func (s *Store) Flush(ctx context.Context) error { return s.ready(ctx) }

// Inner returns the wrapped store (for queries that need it directly).
func (s *Store) Inner() catalog.Store { return s.inner }

// --- the recording transaction ---

type recTx struct {
	s       *Store
	ops     []op
	meta    catalog.Meta
	metaSet bool
	overlay *memstore.Store // built on the first read
	err     error
}

var _ catalog.RWTx = (*recTx)(nil)

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (t *recTx) record(ctx context.Context, o op) error {
	if t.err != nil {
		return t.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t.ops = append(t.ops, o)
	if t.overlay != nil {
		if err := t.overlay.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return applyOp(ctx, tx, &o) }); err != nil {
			t.err = err
			return err
		}
	}
	return nil
}

// view returns the overlay: the inner state with everything pending applied,
// plus this transaction's writes so far.
func (t *recTx) view(ctx context.Context) (*memstore.Store, error) {
	if t.overlay != nil {
		return t.overlay, nil
	}
	if err := t.s.flush(ctx); err != nil {
		return nil, err
	}
	in := t.s.inner
	ps, err := in.ListPrincipals(ctx)
	if err != nil {
		return nil, err
	}
	ms, err := in.ListMemberships(ctx)
	if err != nil {
		return nil, err
	}
	ss, err := in.ListSecurables(ctx)
	if err != nil {
		return nil, err
	}
	gs, err := in.ListGrants(ctx)
	if err != nil {
		return nil, err
	}
	ov := memstore.New()
	err = ov.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		for _, p := range ps {
			_ = tx.PutPrincipal(ctx, p)
		}
		for _, m := range ms {
			_ = tx.AddMembership(ctx, m)
		}
		for _, s := range ss {
			_ = tx.PutSecurable(ctx, s)
		}
		for _, g := range gs {
			_ = tx.AddGrant(ctx, g)
		}
		for i := range t.ops {
			if err := applyOp(ctx, tx, &t.ops[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	t.overlay = ov
	return ov, nil
}

func (t *recTx) Meta(ctx context.Context) (catalog.Meta, error) {
	m := t.meta
	m.LogSeq = 0
	return m, ctx.Err()
}

func (t *recTx) ListPrincipals(ctx context.Context) ([]catalog.Principal, error) {
	v, err := t.view(ctx)
	if err != nil {
		return nil, err
	}
	return v.ListPrincipals(ctx)
}

func (t *recTx) ListMemberships(ctx context.Context) ([]catalog.Membership, error) {
	v, err := t.view(ctx)
	if err != nil {
		return nil, err
	}
	return v.ListMemberships(ctx)
}

func (t *recTx) ListSecurables(ctx context.Context) ([]catalog.Securable, error) {
	v, err := t.view(ctx)
	if err != nil {
		return nil, err
	}
	return v.ListSecurables(ctx)
}

func (t *recTx) ListGrants(ctx context.Context) ([]catalog.Grant, error) {
	v, err := t.view(ctx)
	if err != nil {
		return nil, err
	}
	return v.ListGrants(ctx)
}

func (t *recTx) PutPrincipal(ctx context.Context, p catalog.Principal) error {
	p.Created = utc(p.Created)
	return t.record(ctx, op{K: "put_principal", P: &p})
}

func (t *recTx) DeletePrincipal(ctx context.Context, id catalog.ID) error {
	return t.record(ctx, op{K: "delete_principal", ID: id})
}

func (t *recTx) AddMembership(ctx context.Context, m catalog.Membership) error {
	return t.record(ctx, op{K: "add_member", M: &m})
}

func (t *recTx) RemoveMembership(ctx context.Context, m catalog.Membership) error {
	return t.record(ctx, op{K: "remove_member", M: &m})
}

func (t *recTx) PutSecurable(ctx context.Context, s catalog.Securable) error {
	s.Created = utc(s.Created)
	return t.record(ctx, op{K: "put_securable", S: &s})
}

func (t *recTx) DeleteSecurable(ctx context.Context, id catalog.ID) error {
	return t.record(ctx, op{K: "delete_securable", ID: id})
}

func (t *recTx) AddGrant(ctx context.Context, g catalog.Grant) error {
	return t.record(ctx, op{K: "add_grant", G: &g})
}

func (t *recTx) RemoveGrant(ctx context.Context, k catalog.GrantKey) error {
	return t.record(ctx, op{K: "remove_grant", GK: &k})
}

func (t *recTx) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	if len(events) == 0 {
		return ctx.Err()
	}
	cp := make([]catalog.AuditEvent, len(events))
	for i, e := range events {
		e.Time = utc(e.Time)
		// Refuse what the inner store would refuse when applying (which
		// would then fail again at every retry), and repair invalid UTF-8,
		// which DuckDB refuses too.
		if err := e.Validate(); err != nil {
			return err
		}
		cp[i] = e
	}
	return t.record(ctx, op{K: "audit", A: cp})
}

func (t *recTx) SetMeta(ctx context.Context, m catalog.Meta) error {
	m.LogSeq = 0
	t.meta, t.metaSet = m, true
	return t.record(ctx, op{K: "meta", MT: &m})
}
