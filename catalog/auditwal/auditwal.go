package auditwal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/internal/lowprio"
	"github.com/mandatehq/mandate/catalog/internal/wal"
)

// FileName is the log file in the data directory.
const FileName = "audit.wal"

// changeAuditMagic starts the body of a record of AppendChangeAudit: then
// the new AuditedRevision as a uvarint, then a binary audit body. (Not
// one of the binary audit bodies' first bytes, 0xA1..0xA3.)
const changeAuditMagic = 0xAC

// Inner is the event store behind the log (duckstore; memstore in tests).
type Inner interface {
	catalog.AuditReader
	// AuditedRevision and LogSeq return what the last ApplyLog recorded.
	AuditedRevision(ctx context.Context) (catalog.Revision, error)
	LogSeq(ctx context.Context) (int64, error)
	// ApplyLog appends events (completions applied in order), raises the
	// AuditedRevision to mark and records seq as the last log record
	// applied, in one transaction.
	ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error
	Close() error
}

// Options configure the log.
type Options struct {
	Logger zerolog.Logger
	// ApplyInterval is how often pending records are applied (default 5s).
	// Each apply is one transaction of the inner store, which costs DuckDB
	// about 13 ms of CPU whatever its size (and each row less in a large
	// one): fewer, larger batches make the audit cheaper. Readers do not
	// wait for it: they apply what is pending first.
	ApplyInterval time.Duration
	// MaxPending applies as soon as this many events wait (default 8192):
	// under load batches are this large, and a reader never has more than
	// about this many events to apply first.
	MaxPending int
	// ApplyDelay: the background applier leaves records younger than this
	// pending (default 100ms; negative: none), so that a gateway call's
	// audit completion, which follows its request within milliseconds,
	// is merged into the request's row before the inner store sees it
	// instead of updating it there. Reads and Flush apply everything, and
	// so does the applier while more than half of MaxPendingBytes wait.
	ApplyDelay time.Duration
	// RotateBytes rewrites the log once this many bytes of it are applied
	// while new records keep it from being truncated (default 64 MiB).
	RotateBytes int64
	// MaxPendingBytes bounds the records logged but not yet applied to the
	// inner store (default 256 MiB), which are also held in memory: past
	// it, AppendAudit waits (within its context) until the applier has
	// caught up. Audit ingestion faster than the inner store can apply it
	// is slowed down instead of exhausting memory. AppendChangeAudit does
	// not wait (see the package documentation).
	MaxPendingBytes int64
	// SyncInterval, when positive, is --audit-sync off (PostgreSQL's
	// synchronous_commit = off with its wal_writer_delay): AppendAudit
	// writes its record and returns without an fsync; a background loop
	// fsyncs the log every SyncInterval when something was written since
	// the last one. A process crash (kill -9) loses nothing written (the
	// kernel holds it); an OS crash or power loss loses at most the records
	// of the last SyncInterval (a torn tail is cut at the next Open). A
	// failed fsync fails every later append (fail closed). Zero: every
	// append fsyncs before it returns. AppendChangeAudit always fsyncs.
	SyncInterval time.Duration
	// ApplySlice bounds the events of one background apply transaction
	// (default 2048, about 1,000 rows of gateway calls: a request and its
	// completion are one row). A round applies what is pending in slices
	// and pauses after each one as long as it took, so that DuckDB's
	// apply never takes the CPU in one long burst (an apply of thousands
	// of rows takes tens of milliseconds of CPU, on as many cores as DuckDB
	// has threads, which gateway calls would wait behind). Reads and Flush
	// apply everything at once, and the applier does not pause while more
	// than half of MaxPendingBytes wait.
	ApplySlice int
	// LazySyncDelay bounds how long a record of AppendAuditLazy stays
	// written but not fsynced when no AppendAudit follows to fsync it
	// (default 10ms; with SyncInterval the syncer's interval applies).
	LazySyncDelay time.Duration
	// ApplyNice, when positive, runs the background applier on an OS
	// thread of its own at this nice value (catalog/internal/lowprio):
	// with DuckDB's threads = 1 its apply runs on the calling thread, so
	// under contention the kernel gives the request path the core first.
	// Flush and reads apply on their caller's thread, at its priority.
	ApplyNice int
}

// Log is a catalog.EventStore: a write-ahead log in front of inner.
type Log struct {
	inner Inner
	path  string
	log   zerolog.Logger
	opts  Options

	mu   sync.Mutex // guards the fields below
	f    *os.File
	size int64
	// alloc is the file's size: size and the allocated space after it,
	// reading as zeros (preallocate); zeroing: a preallocate is under way.
	alloc    int64
	zeroing  bool
	seq      int64            // last appended record
	mark     catalog.Revision // AuditedRevision, pending records included
	pending  []*record
	live     int64         // framed bytes of the pending records
	nevents  int           // events of the pending records
	applied  chan struct{} // closed (and replaced) whenever records were applied
	applyErr error
	buf      []byte // encode's, reused while at most maxKeptBuffer
	// unsynced: records were written since the last fsync (SyncInterval);
	// syncErr: a background fsync failed, every later append fails.
	unsynced bool
	syncErr  error
	durable  int64 // the last record known durable
	syncs    int64 // fsyncs of appended records (tests)
	// lazyTimer fsyncs the records of AppendAuditLazy that no AppendAudit
	// fsynced within LazySyncDelay (armed while lazyArmed).
	lazyTimer *time.Timer
	lazyArmed bool
	lazySince time.Time // the first record written since the last fsync
	// syncMu serializes the lazy timer's fsync with Close.
	syncMu sync.Mutex

	applyMu sync.Mutex // serializes applying
	// zeroers counts the running preallocate goroutines (Close waits).
	zeroers sync.WaitGroup
	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	closed  atomic.Bool
	once    sync.Once
	// syncStopped is closed by the syncer when it returns (SyncInterval).
	syncStopped chan struct{}
}

var (
	_ catalog.EventStore      = (*Log)(nil)
	_ catalog.AuditSyncWriter = (*Log)(nil)
)

// record is one logged write.
type record struct {
	seq    int64
	size   int64 // framed size in the log
	events []catalog.AuditEvent
	mark   catalog.Revision // 0: an AppendAudit record
	at     time.Time        // when it was appended (zero: replayed)
	// taken marks the completions among events that an earlier apply
	// already merged into their request's row (pullCompletions): the
	// record's own apply skips them. Only apply touches it (applyMu).
	taken []bool
}

// Open opens (creating if needed) dir/audit.wal in front of inner and
// replays the records inner has not applied yet.
func Open(ctx context.Context, dir string, inner Inner, o Options) (*Log, error) {
	if o.ApplyInterval <= 0 {
		o.ApplyInterval = 5 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 8192
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
	if o.ApplySlice <= 0 {
		o.ApplySlice = 2048
	}
	if o.LazySyncDelay <= 0 {
		o.LazySyncDelay = 10 * time.Millisecond
	}
	l := &Log{inner: inner, path: filepath.Join(dir, FileName), log: o.Logger, opts: o,
		kick: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}), applied: make(chan struct{})}
	seq, err := inner.LogSeq(ctx)
	if err != nil {
		return nil, err
	}
	if l.mark, err = inner.AuditedRevision(ctx); err != nil {
		return nil, err
	}
	l.seq = seq
	_, statErr := os.Stat(l.path)
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, catalog.Internal(err, "opening the audit log")
	}
	if os.IsNotExist(statErr) {
		if err := wal.SyncDir(dir); err != nil {
			f.Close()
			return nil, catalog.Internal(err, "syncing the data directory")
		}
	}
	l.f = f
	raw, good, err := wal.Read(f, seq)
	if err != nil {
		f.Close()
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() > good {
		// Zeros after the last record are preallocated space; anything
		// else is a torn record.
		if zero, _ := wal.Zero(f, good, st.Size()); !zero {
			l.log.Warn().Int64("bytes", st.Size()-good).Msg("audit log: cut off a torn record at the end (never acknowledged)")
		}
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, catalog.Internal(err, "cutting off a torn audit log record")
		}
	}
	l.size, l.alloc = good, good
	for _, r := range raw {
		if r.Body == nil {
			continue
		}
		rec, err := decode(r.Body)
		if err != nil {
			l.f.Close()
			return nil, catalog.Internal(err, fmt.Sprintf("audit log record at offset %d is unreadable", r.Offset))
		}
		rec.seq, rec.size = r.Seq, r.Size
		l.pending = append(l.pending, rec)
		l.live += rec.size
		l.nevents += len(rec.events)
		l.seq = rec.seq
		l.mark = max(l.mark, rec.mark)
	}
	if len(l.pending) > 0 {
		l.log.Info().Int("records", len(l.pending)).Msg("audit log: replaying committed records")
	}
	l.durable = l.seq
	if err := l.flush(ctx); err != nil {
		l.f.Close()
		return nil, err
	}
	go l.applier()
	if o.SyncInterval > 0 {
		l.syncStopped = make(chan struct{})
		go l.syncer()
	}
	return l, nil
}

// encode frames a record into buf's storage (grown as needed).
func encode(buf []byte, r *record) ([]byte, error) {
	buf = slices.Grow(buf[:0], wal.HeaderSize+binary.MaxVarintLen64+1+wal.AuditSize(r.events))[:wal.HeaderSize]
	if r.mark > 0 {
		buf = append(buf, changeAuditMagic)
		buf = binary.AppendUvarint(buf, uint64(r.mark))
	}
	buf = wal.AppendAudit(buf, r.events)
	if err := wal.Seal(buf, r.seq); err != nil {
		return nil, err
	}
	return buf, nil
}

// maxKeptBuffer bounds the encoding buffer a Log keeps between appends
// (under load a group commit's record is tens of kilobytes: a buffer
// allocated and cleared for each of them cost more than the encoding).
const maxKeptBuffer = 1 << 20

// decode decodes a record body (seq and size are the caller's).
func decode(body []byte) (*record, error) {
	r := &record{}
	if len(body) > 0 && body[0] == changeAuditMagic {
		mark, n := binary.Uvarint(body[1:])
		if n <= 0 || mark == 0 {
			return nil, errors.New("malformed change audit record")
		}
		r.mark = catalog.Revision(mark)
		body = body[1+n:]
	}
	events, err := wal.DecodeAudit(body)
	if err != nil {
		return nil, err
	}
	r.events = events
	return r, nil
}

func (l *Log) checkOpen() error {
	if l.closed.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "audit store is closed")
	}
	return nil
}

// prepare copies events in the form every store keeps: times in UTC to
// the microsecond, text validated (what the inner store would refuse at
// every apply is refused at once, invalid UTF-8 is repaired).
func prepare(events []catalog.AuditEvent) ([]catalog.AuditEvent, error) {
	cp := make([]catalog.AuditEvent, len(events))
	for i, e := range events {
		e.Time = e.Time.UTC().Truncate(time.Microsecond)
		if err := e.Validate(); err != nil {
			return nil, err
		}
		cp[i] = e
	}
	return cp, nil
}

// AppendAudit implements catalog.AuditWriter: the events are durable in
// the log when it returns. Concurrent calls do not share an fsync: put a
// catalog.AuditLog in front for group commit.
func (l *Log) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	return l.appendEvents(ctx, events, l.opts.SyncInterval <= 0)
}

// AppendAuditLazy implements catalog.AuditLazyWriter: like AppendAudit,
// but the record is only written when it returns (a process crash keeps
// it, the kernel holds it); the next AppendAudit's fsync makes it durable
// with its own record, or, if none comes, a background fsync within
// LazySyncDelay (with SyncInterval, the syncer's). catalog.AuditLog writes
// the events nobody waits for this way (a gateway call's completion), so
// that their fsync does not hold up the next request record somebody
// waits for. A failed background fsync fails every later append.
func (l *Log) AppendAuditLazy(ctx context.Context, events ...catalog.AuditEvent) error {
	return l.appendEvents(ctx, events, false)
}

// AppendPrepared implements catalog.AuditPreparedWriter: AppendAudit
// (durable) or AppendAuditLazy for a batch of catalog.AuditLog, whose
// events are validated already and become the log's: it keeps them as
// they are (times cut to the microsecond in place) instead of copying and
// validating them again.
func (l *Log) AppendPrepared(ctx context.Context, events []catalog.AuditEvent, durable bool) error {
	if err := l.checkWrite(ctx); err != nil || len(events) == 0 {
		return err
	}
	for i := range events {
		events[i].Time = events[i].Time.Truncate(time.Microsecond)
	}
	return l.appendRecord(ctx, events, durable && l.opts.SyncInterval <= 0)
}

// appendEvents writes events as one record, with an fsync when sync.
func (l *Log) appendEvents(ctx context.Context, events []catalog.AuditEvent, sync bool) error {
	if err := l.checkWrite(ctx); err != nil || len(events) == 0 {
		return err
	}
	cp, err := prepare(events)
	if err != nil {
		return err
	}
	return l.appendRecord(ctx, cp, sync)
}

// checkWrite fails if the log is closed or ctx ended.
func (l *Log) checkWrite(ctx context.Context) error {
	if err := l.checkOpen(); err != nil {
		return err
	}
	return ctx.Err()
}

// appendRecord waits for room and logs events (the log's own) as one
// record.
func (l *Log) appendRecord(ctx context.Context, events []catalog.AuditEvent, sync bool) error {
	if err := l.waitRoom(ctx); err != nil {
		return err
	}
	return l.append(ctx, &record{events: events}, 0, sync)
}

// AuditedRevision implements catalog.EventStore.
func (l *Log) AuditedRevision(ctx context.Context) (catalog.Revision, error) {
	if err := l.checkOpen(); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mark, nil
}

// AppendChangeAudit implements catalog.EventStore. It does not wait for
// room (MaxPendingBytes): the audit records of catalog changes are few,
// and their forwarding must not be starved by a flood of other events.
func (l *Log) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	if err := l.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cp, err := prepare(events)
	if err != nil {
		return err
	}
	return l.append(ctx, &record{events: cp, mark: through}, through, true)
}

// append logs r, fsynced before it returns if sync (else by the syncer).
// For a change audit record (mark > 0) the events of revisions the store
// holds are dropped first, and nothing is logged if nothing is new.
func (l *Log) append(ctx context.Context, r *record, mark catalog.Revision, sync bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkOpen(); err != nil {
		return err
	}
	if l.syncErr != nil {
		return errSyncFailed(l.syncErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if mark > 0 {
		keep := r.events[:0]
		for _, e := range r.events {
			if e.Revision > l.mark {
				keep = append(keep, e)
			}
		}
		r.events = keep
		if mark <= l.mark && len(keep) == 0 {
			return nil
		}
		r.mark = max(mark, l.mark)
	}
	r.seq = l.seq + 1
	buf, err := encode(l.buf, r)
	if err != nil {
		return err
	}
	if cap(buf) <= maxKeptBuffer {
		l.buf = buf
	}
	r.size, r.at = int64(len(buf)), time.Now()
	if err := l.write(buf, sync); err != nil {
		return l.failAppend(err)
	}
	if sync {
		l.syncs++
		l.durable = r.seq
		l.unsynced = false
	} else {
		if !l.unsynced {
			l.lazySince = r.at
		}
		l.unsynced = true
		if l.opts.SyncInterval <= 0 && !l.lazyArmed {
			// No syncer: fsync within LazySyncDelay unless an append does.
			l.lazyArmed = true
			if l.lazyTimer == nil {
				l.lazyTimer = time.AfterFunc(l.opts.LazySyncDelay, l.lazySync)
			} else {
				l.lazyTimer.Reset(l.opts.LazySyncDelay)
			}
		}
	}
	l.size += r.size
	l.alloc = max(l.alloc, l.size)
	if l.alloc-l.size < preallocAhead/2 && !l.zeroing {
		l.zeroing = true
		l.zeroers.Add(1)
		go l.preallocate()
	}
	l.seq = r.seq
	l.mark = max(l.mark, r.mark)
	l.pending = append(l.pending, r)
	l.live += r.size
	l.nevents += len(r.events)
	if l.nevents >= l.opts.MaxPending || l.live > l.opts.MaxPendingBytes/2 {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// write writes buf at the log's end, durable when it returns if sync.
// Caller holds l.mu.
func (l *Log) write(buf []byte, sync bool) error {
	if _, err := l.f.WriteAt(buf, l.size); err != nil {
		return err
	}
	if sync {
		return datasync(l.f)
	}
	return nil
}

// waitRoom waits while more than MaxPendingBytes wait to be applied.
func (l *Log) waitRoom(ctx context.Context) error {
	for {
		l.mu.Lock()
		over, applied := l.live > l.opts.MaxPendingBytes, l.applied
		l.mu.Unlock()
		if !over {
			return nil
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return &catalog.Error{Code: catalog.CodeUnavailable, Err: ctx.Err(),
				Msg: "audit log: too much is waiting to be applied to the store; try again later"}
		case <-l.done:
			return catalog.Errorf(catalog.CodeUnavailable, "audit store is closed")
		}
	}
}

// preallocAhead is the space the log keeps allocated after its last
// record, reading as zeros. An append then writes within the file's
// size, and its sync commits no size change: appending past the end
// also changes the file's size, which fdatasync must commit to the
// filesystem's journal first (on ext4 about 20% of a small append's
// fsync, measured on the VM of BENCHMARKS.md). Readers take zeros after
// the last record for the end of the log (wal.Read).
const preallocAhead = 1 << 20

// preallocate allocates the next preallocAhead bytes after the file's
// end and makes the new size durable, so that the appends that follow
// need not change it (allocate: fallocate where the filesystem has it,
// so no data is written). It runs in the background,
// kicked by an append when less than half of it is left; the space is
// allocated under l.mu (an append cannot write there meanwhile), the
// fdatasync runs outside it. An append that outruns it just extends the
// file. Errors only leave the space unallocated (an append then extends
// the file).
func (l *Log) preallocate() {
	defer l.zeroers.Done()
	l.mu.Lock()
	f, from := l.f, l.alloc
	ok := !l.closed.Load()
	if ok {
		if ok = allocate(f, from, preallocAhead) == nil; ok {
			l.alloc = from + preallocAhead
		}
	}
	l.mu.Unlock()
	if ok {
		_ = datasync(f) // a file rewrite closed meanwhile: the new one preallocates
	}
	l.mu.Lock()
	l.zeroing = false
	l.mu.Unlock()
}

// writeZeros allocates n bytes at off by writing zeros there.
func writeZeros(f *os.File, off, n int64) error {
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}

// failAppend cuts a partial record off and reports the failure. Caller
// holds l.mu.
func (l *Log) failAppend(err error) error {
	if terr := l.f.Truncate(l.size); terr != nil {
		l.log.Error().Err(terr).Msg("audit log: cannot cut off a failed append; closing the store")
		l.closed.Store(true)
	}
	l.alloc = l.size
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "audit log write failed; the events were not recorded", Err: err}
}

// syncer fsyncs the log every SyncInterval while appends leave it
// unsynced. The fsync runs outside l.mu, so appends are not held up by it
// (a concurrent write is fine; a file replaced by rewrite was fsynced
// there, and Go defers its close until this Sync returns).
func (l *Log) syncer() {
	defer close(l.syncStopped)
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		_ = l.syncNow() // a failure fails the later appends
	}
}

// lazySync is the lazy timer's: it fsyncs what AppendAuditLazy left
// unsynced for LazySyncDelay, unless the log was closed (Close fsyncs
// it). Under steady traffic an AppendAudit fsyncs the lazy records within
// milliseconds: the timer then only re-arms for the records written since.
func (l *Log) lazySync() {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if !l.unsynced {
		l.lazyArmed = false
		l.mu.Unlock()
		return
	}
	if wait := l.opts.LazySyncDelay - time.Since(l.lazySince); wait > 0 {
		l.lazyTimer.Reset(wait)
		l.mu.Unlock()
		return
	}
	l.lazyArmed = false
	l.mu.Unlock()
	if l.closed.Load() {
		return
	}
	_ = l.syncNow() // a failure fails the later appends
}

// syncNow makes every record written so far durable, unless it is
// already: an fsync outside l.mu, so appends go on meanwhile. A failed
// fsync fails every later append.
func (l *Log) syncNow() error {
	l.mu.Lock()
	if l.syncErr != nil {
		err := l.syncErr
		l.mu.Unlock()
		return errSyncFailed(err)
	}
	f, upTo := l.f, l.seq
	if l.durable >= upTo {
		l.mu.Unlock()
		return nil
	}
	l.unsynced = false
	l.mu.Unlock()
	err := datasync(f)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil && f == l.f {
		if l.syncErr == nil {
			l.log.Error().Err(err).Msg("audit log: fsync failed; refusing further audit writes")
		}
		l.syncErr = err
		return errSyncFailed(err)
	}
	// (A log rewritten meanwhile was fsynced with its records.)
	l.durable = max(l.durable, upTo)
	l.syncs++
	return nil
}

// errSyncFailed is the error of every write after a failed fsync.
func errSyncFailed(err error) error {
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "audit log fsync failed; the store refuses writes until restarted", Err: err}
}

// SyncAudit implements catalog.AuditSyncWriter: the records appended
// before it are durable when it returns (with SyncInterval it returns at
// once, as AppendAudit does without its fsync).
func (l *Log) SyncAudit(ctx context.Context) error {
	if err := l.checkWrite(ctx); err != nil {
		return err
	}
	if l.opts.SyncInterval > 0 {
		return nil
	}
	return l.syncNow()
}

// applyErrorLogEvery bounds how often the applier logs a store that keeps
// failing (it retries at every ApplyInterval).
const applyErrorLogEvery = 10 * time.Second

func (l *Log) applier() {
	defer close(l.stopped)
	if l.opts.ApplyNice > 0 {
		// Never unlocked: the thread ends with this goroutine.
		if err := lowprio.Lock(l.opts.ApplyNice); err != nil {
			l.log.Warn().Err(err).Msg("audit log: could not lower the applier's CPU priority")
		}
	}
	t := time.NewTicker(l.opts.ApplyInterval)
	defer t.Stop()
	// A store that stays down is retried at every tick: its failures are
	// logged at most once per applyErrorLogEvery, and its recovery once.
	var (
		failures int
		logged   time.Time
	)
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.kick:
		}
		before := time.Now().Add(-l.opts.ApplyDelay)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t0 := time.Now()
			more, err := l.apply(ctx, before, l.opts.ApplySlice)
			cancel()
			switch {
			case err != nil:
				failures++
				if failures == 1 || time.Since(logged) >= applyErrorLogEvery {
					logged = time.Now()
					l.log.Error().Err(err).Int("failures", failures).
						Msg("audit log: applying to the store failed; will retry (the log keeps the events)")
				}
			case failures > 0:
				l.log.Info().Int("failures", failures).Msg("audit log: applying to the store works again")
				failures = 0
			}
			if err != nil || !more {
				break
			}
			// Yield as long as the slice took (at most half the CPU),
			// unless the log is filling up.
			l.mu.Lock()
			pressed := l.live > l.opts.MaxPendingBytes/2
			l.mu.Unlock()
			if pressed {
				continue
			}
			pause := time.NewTimer(min(time.Since(t0), maxApplyPause))
			select {
			case <-l.done:
				pause.Stop()
				return
			case <-pause.C:
			}
		}
	}
}

// maxApplyPause bounds the applier's pause between two slices.
const maxApplyPause = 100 * time.Millisecond

// maxApplyEvents bounds the events of one inner transaction.
const maxApplyEvents = 1 << 16

// flush applies the records pending when it is called to the inner store
// (in transactions of at most maxApplyEvents events; records that arrive
// meanwhile wait for the next flush), then truncates the log if nothing
// new arrived.
func (l *Log) flush(ctx context.Context) error {
	_, err := l.apply(ctx, time.Time{}, 0)
	return err
}

// apply is flush for the records appended before before (all of them for
// a zero time, or while more than half of MaxPendingBytes wait). With
// slice > 0 it applies one transaction of at most slice events (at least
// one record) and says whether more of those records are left.
func (l *Log) apply(ctx context.Context, before time.Time, slice int) (more bool, err error) {
	limit := maxApplyEvents
	if slice > 0 {
		limit = min(slice, maxApplyEvents)
	}
	l.applyMu.Lock()
	defer l.applyMu.Unlock()
	l.mu.Lock()
	left := len(l.pending)
	if !before.IsZero() && l.live <= l.opts.MaxPendingBytes/2 {
		for left > 0 && l.pending[left-1].at.After(before) {
			left--
		}
	}
	l.mu.Unlock()
	for left > 0 {
		l.mu.Lock()
		var batch []*record
		n := 0
		for _, r := range l.pending[:left] {
			if len(batch) > 0 && n+len(r.events) > limit {
				break
			}
			batch = append(batch, r)
			n += len(r.events)
		}
		later := l.pending[len(batch):len(l.pending):len(l.pending)]
		l.mu.Unlock()
		left -= len(batch)
		events := make([]catalog.AuditEvent, 0, n)
		var mark catalog.Revision
		for _, r := range batch {
			if r.taken == nil {
				events = append(events, r.events...)
			} else {
				for i := range r.events {
					if !r.taken[i] {
						events = append(events, r.events[i])
					}
				}
			}
			mark = max(mark, r.mark)
		}
		events, pulled := pullCompletions(events, later)
		last := batch[len(batch)-1].seq
		if err := l.inner.ApplyLog(ctx, last, events, mark); err != nil {
			for _, p := range pulled { // still to be applied with their records
				p.r.taken[p.i] = false
			}
			l.mu.Lock()
			l.applyErr = err
			l.mu.Unlock()
			return false, err
		}
		l.mu.Lock()
		l.applyErr = nil
		for _, r := range batch {
			l.live -= r.size
			l.nevents -= len(r.events)
		}
		close(l.applied)
		l.applied = make(chan struct{})
		l.pending = l.pending[len(batch):]
		if len(l.pending) == 0 && l.size > 0 {
			if err := l.f.Truncate(0); err == nil {
				l.size, l.alloc = 0, 0
				_ = l.f.Sync()
			}
		} else if l.size-l.live > l.opts.RotateBytes {
			// Under steady writes the log never empties: once the applied
			// prefix is large, rewrite the log with only the pending records.
			if err := l.rewrite(); err != nil {
				l.log.Error().Err(err).Msg("audit log: rotation failed; will retry")
			}
		}
		l.mu.Unlock()
		if slice > 0 {
			return left > 0, nil
		}
	}
	return false, nil
}

// pulled is a completion pullCompletions took from a later record.
type pulled struct {
	r *record
	i int
}

// pullCompletions appends to events, the events of a batch about to be
// applied, the completions in later records (durable, pending) of the
// requests in events that lack their completion there, and marks them
// taken in their records. A gateway call's completion follows its
// request within its call's duration, so at any moment the calls in
// flight straddle the batch's end: without this their completions would
// reach the inner store after their rows, each batch then updating rows
// it has just written (an UPDATE in DuckDB) instead of writing them once,
// merged. A completion so applied before its own record is applied again
// if the process stops before that record is (replayed): completing a
// row twice with the same outcome leaves it as it was. At most one
// completion per request in events is added.
func pullCompletions(events []catalog.AuditEvent, later []*record) ([]catalog.AuditEvent, []pulled) {
	if len(later) == 0 {
		return events, nil
	}
	open := make(map[string]struct{})
	for i := range events {
		e := &events[i]
		if e.Completes {
			delete(open, e.EventID)
		} else if e.EventID != "" {
			open[e.EventID] = struct{}{}
		}
	}
	var out []pulled
	for _, r := range later {
		if len(open) == 0 {
			break
		}
		for i := range r.events {
			e := &r.events[i]
			if !e.Completes || (r.taken != nil && r.taken[i]) {
				continue
			}
			if _, ok := open[e.EventID]; !ok {
				continue
			}
			delete(open, e.EventID)
			if r.taken == nil {
				r.taken = make([]bool, len(r.events))
			}
			r.taken[i] = true
			out = append(out, pulled{r, i})
			events = append(events, *e)
		}
	}
	return events, out
}

// rewrite replaces the log with one holding only the pending records
// (temp file, fsync, rename, fsync of the directory). Caller holds l.mu.
func (l *Log) rewrite() error {
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	var size int64
	for _, r := range l.pending {
		buf, err := encode(l.buf, r)
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
	if err := os.Rename(tmp, l.path); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := wal.SyncDir(filepath.Dir(l.path)); err != nil {
		l.log.Warn().Err(err).Msg("audit log: fsync of the data directory failed")
	}
	// The old log is no longer in the directory: closing it frees its
	// blocks, which takes tens of milliseconds for a large log (ext4), too
	// long to hold up the appends waiting for l.mu.
	go l.f.Close()
	l.f, l.size, l.alloc = f, size, size
	l.durable = l.seq // the pending records fsynced above, the others applied
	return nil
}

// Close applies what is pending and closes the log and the inner store.
func (l *Log) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock() // wait for a running append
		l.closed.Store(true)
		l.mu.Unlock()
		close(l.done)
		<-l.stopped
		if l.syncStopped != nil {
			<-l.syncStopped
		}
		l.zeroers.Wait()
		l.syncMu.Lock() // a running lazy fsync ends first; later ones see closed
		_ = l.syncNow()
		l.syncMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if ferr := l.flush(ctx); ferr != nil {
			l.log.Error().Err(ferr).Msg("audit log: could not apply pending records at close; they stay in the log")
		}
		// No preallocated zeros left behind a clean close (a Mandate
		// before them would take them for corruption).
		if l.alloc > l.size {
			_ = l.f.Truncate(l.size)
		}
		err = errors.Join(l.f.Close(), l.inner.Close())
	})
	return err
}

// Flush applies every pending record to the inner store now. A reader of
// the inner store that bypasses the Log (a query engine on DuckDB's own
// connections) calls it first to see every durable event: records are
// otherwise applied every ApplyInterval, later under load.
func (l *Log) Flush(ctx context.Context) error {
	if err := l.checkOpen(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return l.flush(ctx)
}

// ListAudit implements catalog.AuditReader (pending records applied first).
func (l *Log) ListAudit(ctx context.Context, since time.Time, limit int) ([]catalog.AuditEvent, error) {
	if err := l.Flush(ctx); err != nil {
		return nil, err
	}
	return l.inner.ListAudit(ctx, since, limit)
}
