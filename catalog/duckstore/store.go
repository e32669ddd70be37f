package duckstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/schema"
)

// FileName is the database file inside the data directory. DuckDB keeps its
// write-ahead log beside it (catalog.duckdb.wal).
const FileName = "catalog.duckdb"

// DefaultMaxConns is the connection pool size when Options.MaxConns is 0:
// one connection for the writer and three for concurrent readers.
const DefaultMaxConns = 4

// Options configures a Store. The zero value is valid.
type Options struct {
	// Logger receives startup messages (migrations applied). The zero value
	// logs nothing.
	Logger zerolog.Logger
	// MaxConns bounds the pool of DuckDB connections (at least 2: a read
	// made while a write transaction is open needs a second connection).
	// 0 means DefaultMaxConns.
	MaxConns int
	// Threads is DuckDB's worker thread count; 0 keeps DuckDB's default
	// (one per core).
	Threads int
	// MemoryLimit is DuckDB's memory_limit, e.g. "512MB"; "" keeps DuckDB's
	// default (80% of RAM). It bounds the memory DuckDB manages (hash
	// tables, aggregate states, sorts, caches) for the store and its query
	// engine together; a query beyond it fails with 53200.
	MemoryLimit string
	// MaxTempDirectorySize is DuckDB's max_temp_directory_size, the disk
	// space a query may spill to (beside the database file, in
	// catalog.duckdb.tmp) when it exceeds MemoryLimit; "" keeps DuckDB's
	// default (90% of the free disk space).
	MaxTempDirectorySize string
	// CheckpointThreshold is DuckDB's checkpoint_threshold: the size of its
	// WAL past which a commit checkpoints it into the database file.
	// "" means DefaultCheckpointThreshold.
	CheckpointThreshold string
}

// DefaultCheckpointThreshold is the checkpoint_threshold when
// Options.CheckpointThreshold is "". With DuckDB's own default, 16 MiB,
// sustained audit ingestion spends a third of its CPU in checkpoints: each
// one rewrites the audit table's last, partly filled row group (122,880
// rows, about 50 MB of events), so every event is compressed and written
// several times. Measured with BenchmarkAuditLog, a checkpoint costs 9.0 µs
// per event at 64 MiB, 6.6 µs at 256 MiB and 5.4 µs with none at all. The
// price is the WAL DuckDB replays when it opens after a crash: up to
// 256 MiB, a few seconds.
const DefaultCheckpointThreshold = "256MiB"

// Store is a catalog.Store kept in a DuckDB file. It is safe for concurrent
// use: reads run concurrently on a pool of connections, write transactions
// run one at a time on a connection of their own.
type Store struct {
	db   *sql.DB
	path string
	// connector opens further connections to the same database (the query
	// engine's pool, see query.go).
	connector *duckdb.Connector
	// wconn is the connection of the write transactions, taken from the pool
	// for the store's lifetime and used under wlock only.
	wconn *sql.Conn
	// wlock serializes write transactions. It is a channel rather than a
	// mutex so that waiting for it honours ctx.
	wlock chan struct{}
	// done is closed by Close; waiters for wlock give up.
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	// auditAppended counts the bytes of the audit events committed since
	// the retention loop last measured the table (retention.go).
	auditAppended atomic.Int64
}

var _ catalog.EventStore = (*Store)(nil)

// hardening is the DuckDB configuration applied when the database opens. It
// keeps the catalog file, which holds sealed secrets, from being used to
// read or write other files or to fetch code: no COPY, ATTACH, read_csv,
// httpfs, and no extension download or autoload. The extensions DuckDB
// links statically (core_functions, icu, json, parquet) stay available.
// TimeZone=UTC and lock_configuration=true are set by setup, after the
// migrations.
var hardening = []struct{ name, value string }{
	{"enable_external_access", "false"},
	{"autoinstall_known_extensions", "false"},
	{"autoload_known_extensions", "false"},
	{"allow_community_extensions", "false"},
	{"allow_unsigned_extensions", "false"},
}

// Open opens (creating it if needed) the store in dir, whose database file is
// dir/catalog.duckdb, and migrates it to schema.LatestVersion. A data
// directory written by a newer Mandate is refused with CodeIncompatibleData;
// a directory in use by another process with CodeUnavailable.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	ms, err := schema.Migrations(schema.DuckDB)
	if err != nil {
		return nil, &catalog.Error{Code: catalog.CodeInternal, Msg: err.Error(), Err: err}
	}
	return open(ctx, dir, opts, ms)
}

// open is Open with the migrations to apply.
func open(ctx context.Context, dir string, opts Options, ms []schema.Migration) (*Store, error) {
	if dir == "" {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: empty data directory")
	}
	// The driver takes configuration in a URL query: a path with '?' or '#'
	// would be cut short and silently lose the hardening.
	if strings.ContainsAny(dir, "?#") {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: data directory %q contains '?' or '#'", dir)
	}
	if opts.MaxConns == 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConns < 2 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: MaxConns is %d, want at least 2", opts.MaxConns)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog store: create data directory: " + err.Error(), Err: err}
	}
	path := filepath.Join(dir, FileName)

	q := url.Values{}
	for _, h := range hardening {
		q.Set(h.name, h.value)
	}
	if opts.Threads > 0 {
		q.Set("threads", strconv.Itoa(opts.Threads))
	}
	if opts.MemoryLimit != "" {
		q.Set("memory_limit", opts.MemoryLimit)
	}
	if opts.MaxTempDirectorySize != "" {
		q.Set("max_temp_directory_size", opts.MaxTempDirectorySize)
	}
	if opts.CheckpointThreshold == "" {
		opts.CheckpointThreshold = DefaultCheckpointThreshold
	}
	q.Set("checkpoint_threshold", opts.CheckpointThreshold)
	// "/" between integers truncates, as in PostgreSQL (queries over system
	// tables, see query.go); the store's own statements do not divide.
	q.Set("integer_division", "true")
	connector, err := duckdb.NewConnector(path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, openError(ctx, path, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	s := &Store{
		db:        db,
		path:      path,
		connector: connector,
		wlock:     make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if err := s.setup(ctx, opts.Logger, ms); err != nil {
		_ = db.Close()
		return nil, err
	}
	if s.wconn, err = db.Conn(ctx); err != nil {
		_ = db.Close()
		return nil, translate(ctx, "open the write connection", err)
	}
	return s, nil
}

// openError translates a failure to open the database file.
func openError(ctx context.Context, path string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Could not set lock on file"):
		return &catalog.Error{Code: catalog.CodeUnavailable, Err: err,
			Msg: fmt.Sprintf("catalog store: %s is in use by another process (a mandate process on this data directory: "+
				"each needs its own --data-dir, every replica of one PostgreSQL store too)", path)}
	case strings.Contains(msg, "not a valid DuckDB database file"),
		strings.Contains(msg, "Trying to read a database file with version number"):
		return &catalog.Error{Code: catalog.CodeIncompatibleData, Err: err,
			Msg: fmt.Sprintf("catalog store: %s cannot be read by this Mandate: %s", path, msg)}
	}
	return translate(ctx, "open "+path, err)
}

// setup sets the time zone, migrates, locks DuckDB's configuration and
// checks that the hardening took effect.
func (s *Store) setup(ctx context.Context, log zerolog.Logger, ms []schema.Migration) error {
	// Without a lock, the database instance is shared with another Store of
	// this process (the driver caches instances by path): refuse, as two
	// writers would not be serialized.
	if _, err := s.db.ExecContext(ctx, "SET GLOBAL TimeZone = 'UTC'"); err != nil {
		if strings.Contains(err.Error(), "configuration has been locked") {
			return &catalog.Error{Code: catalog.CodeUnavailable, Err: err,
				Msg: fmt.Sprintf("catalog store: %s is already open in this process", s.path)}
		}
		return translate(ctx, "set time zone", err)
	}
	if err := s.migrate(ctx, log, ms); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, "SET GLOBAL lock_configuration = true"); err != nil {
		return translate(ctx, "lock configuration", err)
	}
	want := map[string]string{"lock_configuration": "true", "TimeZone": "UTC"}
	for _, h := range hardening {
		want[h.name] = h.value
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, "'"+name+"'")
	}
	rows, err := s.db.QueryContext(ctx,
		"SELECT name, coalesce(value, '') FROM duckdb_settings() WHERE name IN ("+strings.Join(names, ", ")+")")
	if err != nil {
		return translate(ctx, "read settings", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return translate(ctx, "read settings", err)
		}
		if w, ok := want[name]; ok {
			if value != w {
				return catalog.Errorf(catalog.CodeInternal, "catalog store: DuckDB setting %s is %q, want %q", name, value, w)
			}
			delete(want, name)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(ctx, "read settings", err)
	}
	if len(want) > 0 {
		return catalog.Errorf(catalog.CodeInternal, "catalog store: DuckDB lacks the settings %v", want)
	}
	return nil
}

// migrate applies the migrations (versions 1..len(ms), in order) newer than
// the recorded schema_version in one transaction and records the new
// version. A database of a version above len(ms) is refused.
func (s *Store) migrate(ctx context.Context, log zerolog.Logger, ms []schema.Migration) error {
	latest := len(ms)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return translate(ctx, "migrate", err)
	}
	defer func() { _ = tx.Rollback() }()
	current, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if current > latest {
		return catalog.Errorf(catalog.CodeIncompatibleData,
			"data directory was written by a newer Mandate (schema version %d, this binary supports %d); upgrade Mandate",
			current, latest).WithDetail("data directory: " + filepath.Dir(s.path))
	}
	if current == latest {
		return nil
	}
	for _, m := range ms[current:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return translate(ctx, fmt.Sprintf("apply migration %04d_%s", m.Version, m.Name), err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO mandate_meta (key, value) VALUES ('schema_version', $1)
			 ON CONFLICT (key) DO UPDATE SET value = excluded.value`, int64(m.Version)); err != nil {
			return translate(ctx, "record schema version", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return translate(ctx, "migrate", err)
	}
	log.Info().Str("path", s.path).Int("from", current).Int("to", latest).Msg("catalog store migrated")
	return nil
}

// schemaVersion returns the recorded schema version, 0 for an empty database.
func schemaVersion(ctx context.Context, tx *sql.Tx) (int, error) {
	var tables, meta int
	err := tx.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE table_name = 'mandate_meta')
		FROM information_schema.tables WHERE table_schema = 'main'`).Scan(&tables, &meta)
	if err != nil {
		return 0, translate(ctx, "read schema version", err)
	}
	if meta == 0 {
		if tables > 0 {
			return 0, catalog.Errorf(catalog.CodeIncompatibleData,
				"data directory holds a DuckDB database that Mandate did not create (no mandate_meta table)")
		}
		return 0, nil
	}
	var v int64
	err = tx.QueryRowContext(ctx, `SELECT value FROM mandate_meta WHERE key = 'schema_version'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, catalog.Errorf(catalog.CodeIncompatibleData, "data directory has no schema_version in mandate_meta")
	}
	if err != nil {
		return 0, translate(ctx, "read schema version", err)
	}
	return int(v), nil
}

// Close waits for the running write transaction, if any, then closes the
// database; DuckDB checkpoints its WAL into the database file. Operations
// after Close fail with CodeUnavailable. Calling Close again returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.done)
		s.wlock <- struct{}{} // wait for the running write transaction; never released
		err := errors.Join(s.wconn.Close(), s.db.Close())
		if err != nil {
			s.closeErr = translate(context.Background(), "close", err)
		}
	})
	return s.closeErr
}

// lockWrite takes the write lock, or fails when ctx is done or the store is
// closed.
func (s *Store) lockWrite(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := ctx.Err(); err != nil {
		return translate(ctx, "begin transaction", err)
	}
	select {
	case s.wlock <- struct{}{}:
	case <-s.done:
		return errClosed()
	case <-ctx.Done():
		return translate(ctx, "wait for the write lock", ctx.Err())
	}
	if s.closed.Load() { // Close and lockWrite raced for the lock, Close lost
		<-s.wlock
		return errClosed()
	}
	return nil
}

func (s *Store) unlockWrite() { <-s.wlock }

// write runs fn in a transaction and commits it; DuckDB writes and fsyncs
// its WAL before COMMIT returns, so the change is durable when write
// returns nil. Write transactions run one at a time; waiting for the
// previous one honours ctx. If fn returns an error (or panics) the
// transaction is rolled back and the error is returned unchanged. If ctx
// is done before the commit, or a write of fn failed (even if fn ignored
// the error), the transaction is rolled back and an error is returned.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *writeTx) error) error {
	if err := s.lockWrite(ctx); err != nil {
		return err
	}
	defer s.unlockWrite()
	if _, err := s.wconn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
		return translate(ctx, "begin transaction", err)
	}
	tx := &writeTx{conn: s.wconn}
	defer func() {
		if !tx.finished { // fn failed or panicked, or the commit was refused
			tx.finished = true
			// Not ctx: the rollback must run even when ctx is done.
			_, _ = s.wconn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.flush(ctx); err != nil { // the buffered audit events
		return err
	}
	if err := ctx.Err(); err != nil {
		return translate(ctx, "commit", err)
	}
	tx.finished = true
	// Not ctx: once started, the commit completes and reports its outcome.
	if _, err := s.wconn.ExecContext(context.Background(), "COMMIT"); err != nil {
		_, _ = s.wconn.ExecContext(context.Background(), "ROLLBACK") // in case the transaction is still open
		return translate(ctx, "commit", err)
	}
	s.auditAppended.Add(tx.auditBytes)
	return nil
}

// AppendAudit implements catalog.AuditWriter: events in a transaction of
// their own.
func (s *Store) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := ctx.Err(); err != nil {
		return translate(ctx, "append audit events", err)
	}
	if len(events) == 0 {
		return nil
	}
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error { return tx.AppendAudit(ctx, events...) })
}

// AuditedRevision implements catalog.EventStore.
func (s *Store) AuditedRevision(ctx context.Context) (catalog.Revision, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	v, err := metaValue(ctx, s.db, "audit_revision")
	return catalog.Revision(v), err
}

// AppendChangeAudit implements catalog.EventStore.
func (s *Store) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	if s.closed.Load() {
		return errClosed()
	}
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		mark, err := tx.metaValue(ctx, "audit_revision")
		if err != nil {
			return err
		}
		var keep []catalog.AuditEvent
		for _, e := range events {
			if int64(e.Revision) > mark {
				keep = append(keep, e)
			}
		}
		if err := tx.AppendAudit(ctx, keep...); err != nil {
			return err
		}
		if int64(through) > mark {
			return tx.setMeta(ctx, map[string]int64{"audit_revision": int64(through)})
		}
		return nil
	})
}

// LogSeq returns the sequence number of the last catalog/auditwal record
// applied (auditwal.Inner).
func (s *Store) LogSeq(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, errClosed()
	}
	return metaValue(ctx, s.db, "log_seq")
}

// ApplyLog appends events, raises the AuditedRevision to mark and records
// seq as the last log record applied, in one transaction (auditwal.Inner).
func (s *Store) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	if s.closed.Load() {
		return errClosed()
	}
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := tx.AppendAudit(ctx, events...); err != nil {
			return err
		}
		kv := map[string]int64{"log_seq": seq}
		if mark > 0 {
			old, err := tx.metaValue(ctx, "audit_revision")
			if err != nil {
				return err
			}
			if int64(mark) > old {
				kv["audit_revision"] = int64(mark)
			}
		}
		return tx.setMeta(ctx, kv)
	})
}

// ListAudit returns up to limit events (all when limit <= 0) whose time is at
// or after since (all for the zero time), oldest first; events with the same
// time come in the order they were appended.
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) ([]catalog.AuditEvent, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	return listAudit(ctx, s.db, since, limit)
}
