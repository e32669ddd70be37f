package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/schema"
)

// Channel is the NOTIFY channel an Append signals.
const Channel = "mandate_catalog"

// migrationLock is the key of the advisory lock migrations run under
// ("mandate" in ASCII).
const migrationLock = 0x6d616e64617465

// Defaults of Options.
const (
	DefaultMaxConns    = 4
	DefaultKeepChanges = time.Hour
)

// Options configure a Store.
type Options struct {
	Logger zerolog.Logger
	// MaxConns bounds the pool of connections (default 4: the committer,
	// the follower, a snapshot, a spare); the listener has one more.
	MaxConns int32
	// KeepChanges: Prune keeps change records younger than this (default
	// one hour), so that a replica that was down for less catches up from
	// the records (and forwards their audit records to its event store)
	// instead of reloading a snapshot.
	KeepChanges time.Duration
}

// Store is the catalog.Store of a PostgreSQL database, shared by replicas
// (catalog.Watcher).
type Store struct {
	pool *pgxpool.Pool
	log  zerolog.Logger
	opts Options

	changedMu sync.Mutex
	changed   chan struct{}
	announced atomic.Int64
	// carried holds the change records the latest notifications carried
	// (notify.go).
	carriedMu sync.Mutex
	carried   [carriedRing]*carriedGroup
	// notifyKey authenticates them (nil: none are sent or accepted).
	notifyKey atomic.Pointer[notifyKey]

	stop    context.CancelFunc
	stopped chan struct{}
	closed  atomic.Bool
	once    sync.Once
}

var (
	_ catalog.Store      = (*Store)(nil)
	_ catalog.Watcher    = (*Store)(nil)
	_ catalog.Carrier    = (*Store)(nil)
	_ catalog.HeadLocker = (*Store)(nil)
)

// Open connects to the database at url (a postgres:// URL or a libpq
// connection string), creates or migrates the schema (under an advisory
// lock: replicas starting together migrate once) and starts listening for
// other replicas' commits.
func Open(ctx context.Context, url string, o Options) (*Store, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.KeepChanges <= 0 {
		o.KeepChanges = DefaultKeepChanges
	}
	pool, err := newPool(ctx, url, o.MaxConns, "mandate")
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, log: o.Logger, opts: o, changed: make(chan struct{}), stopped: make(chan struct{})}
	if err := migrate(ctx, pool, o.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.listen(lctx, pool.Config().ConnConfig.Copy())
	return s, nil
}

// newPool connects a pool of at most maxConns connections to url.
func newPool(ctx context.Context, url string, maxConns int32, app string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parser's message may quote the URL, password included.
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: the PostgreSQL URL is malformed")
	}
	cfg.MaxConns = maxConns
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = app
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, translate(ctx, "connect", err)
	}
	return pool, nil
}

// migrate applies the migrations newer than the recorded schema_version
// in one transaction, under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool, log zerolog.Logger) error {
	ms, err := schema.Migrations(schema.PostgreSQL)
	if err != nil {
		return catalog.Internal(err, "catalog store")
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return translate(ctx, "migrate", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
		return translate(ctx, "migrate", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('mandate_meta') IS NOT NULL").Scan(&exists); err != nil {
		return translate(ctx, "migrate", err)
	}
	current := 0
	if exists {
		var v int64
		err := tx.QueryRow(ctx, "SELECT value FROM mandate_meta WHERE key = 'schema_version'").Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.Errorf(catalog.CodeIncompatibleData, "catalog database has no schema_version in mandate_meta")
		}
		if err != nil {
			return translate(ctx, "migrate", err)
		}
		current = int(v)
	}
	if current > len(ms) {
		return catalog.Errorf(catalog.CodeIncompatibleData,
			"catalog database was written by a newer Mandate (schema version %d, this binary supports %d); upgrade Mandate", current, len(ms))
	}
	if current == len(ms) {
		return nil
	}
	for _, m := range ms[current:] {
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return translate(ctx, fmt.Sprintf("apply migration %04d_%s", m.Version, m.Name), err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO mandate_meta (key, value) VALUES ('schema_version', $1)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, int64(m.Version)); err != nil {
			return translate(ctx, "record schema version", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return translate(ctx, "migrate", err)
	}
	log.Info().Int("from", current).Int("to", len(ms)).Msg("catalog database migrated")
	return nil
}

// listen keeps a connection LISTENing on Channel and signals Changed at
// every notification and after every (re)connection (what was missed in
// between is found by polling anyway).
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig) {
	defer close(s.stopped)
	backoff := 100 * time.Millisecond
	var lastErr time.Time
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, cfg, &backoff)
		if ctx.Err() != nil {
			return
		}
		if time.Since(lastErr) > 30*time.Second {
			lastErr = time.Now()
			s.log.Warn().Err(err).Msg("catalog store: the notification connection failed; reconnecting (replicas poll meanwhile)")
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, backoff *time.Duration) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	*backoff = 100 * time.Millisecond
	s.signal()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if rev, ok := s.received(n.Payload); ok {
			for {
				old := s.announced.Load()
				if rev <= old || s.announced.CompareAndSwap(old, rev) {
					break
				}
			}
		}
		s.signal()
	}
}

// Announced implements catalog.Watcher: the newest head a notification
// announced.
func (s *Store) Announced() catalog.Revision { return catalog.Revision(s.announced.Load()) }

func (s *Store) signal() {
	s.changedMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changedMu.Unlock()
}

// Changed implements catalog.Watcher: the channel is closed at the next
// notification of a commit (by any replica).
func (s *Store) Changed() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

func errClosed() error { return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed") }

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	return ctx.Err()
}

// Load implements catalog.Store: the newest snapshot and the records
// after it, read in one REPEATABLE READ transaction.
func (s *Store) Load(ctx context.Context) (*catalog.State, []catalog.Change, error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, nil, translate(ctx, "load", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	st := &catalog.State{}
	var rev int64
	var body []byte
	switch err := tx.QueryRow(ctx, `SELECT revision, state FROM mandate_catalog_snapshots ORDER BY revision DESC LIMIT 1`).Scan(&rev, &body); {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, nil, translate(ctx, "load the snapshot", err)
	default:
		if err := json.Unmarshal(body, st); err != nil {
			return nil, nil, catalog.Internal(err, "catalog store: the snapshot of revision "+fmt.Sprint(rev)+" is unreadable")
		}
		if st.Revision != catalog.Revision(rev) {
			return nil, nil, catalog.Errorf(catalog.CodeIncompatibleData, "catalog store: snapshot row %d holds revision %d", rev, st.Revision)
		}
	}
	var head int64
	if err := tx.QueryRow(ctx, `SELECT revision FROM mandate_catalog_head WHERE id = 1`).Scan(&head); err != nil {
		return nil, nil, translate(ctx, "load", err)
	}
	changes, err := scanChanges(ctx, tx, `SELECT revision, record FROM mandate_catalog_changes WHERE revision > $1 ORDER BY revision`, int64(st.Revision))
	if err != nil {
		return nil, nil, err
	}
	next := st.Revision + 1
	for _, c := range changes {
		if c.Revision != next {
			return nil, nil, catalog.Errorf(catalog.CodeIncompatibleData, "catalog store: change %d is missing (snapshot %d)", next, st.Revision)
		}
		next++
	}
	if next-1 != catalog.Revision(head) {
		return nil, nil, catalog.Errorf(catalog.CodeIncompatibleData, "catalog store: the records end at %d, the head is %d", next-1, head)
	}
	return st, changes, nil
}

// scanChanges runs a query of (revision, record) rows.
func scanChanges(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, query string, args ...any) ([]catalog.Change, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, translate(ctx, "read change records", err)
	}
	defer rows.Close()
	var out []catalog.Change
	for rows.Next() {
		var rev int64
		var body []byte
		if err := rows.Scan(&rev, &body); err != nil {
			return nil, translate(ctx, "read change records", err)
		}
		c, err := decode(rev, body)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(ctx, "read change records", err)
	}
	return out, nil
}

func decode(rev int64, body []byte) (catalog.Change, error) {
	var c catalog.Change
	if err := json.Unmarshal(body, &c); err != nil {
		return c, catalog.Internal(err, fmt.Sprintf("catalog store: change record %d is unreadable", rev))
	}
	if c.Revision != catalog.Revision(rev) {
		return c, catalog.Errorf(catalog.CodeIncompatibleData, "catalog store: change row %d holds revision %d", rev, c.Revision)
	}
	return c, nil
}

// changeOps is a change record without its audit records.
type changeOps struct {
	Revision catalog.Revision   `json:"rev"`
	NextID   catalog.ID         `json:"next_id"`
	Ops      []catalog.ChangeOp `json:"ops"`
}

// decodeOps is decode without the audit records (skipped unread).
func decodeOps(rev int64, body []byte) (catalog.Change, error) {
	if c, ok := decodeOpsFast(body); ok && c.Revision == catalog.Revision(rev) {
		return c, nil
	}
	var c changeOps
	if err := json.Unmarshal(body, &c); err != nil {
		return catalog.Change{}, catalog.Internal(err, fmt.Sprintf("catalog store: change record %d is unreadable", rev))
	}
	if c.Revision != catalog.Revision(rev) {
		return catalog.Change{}, catalog.Errorf(catalog.CodeIncompatibleData, "catalog store: change row %d holds revision %d", rev, c.Revision)
	}
	return catalog.Change{Revision: c.Revision, NextID: c.NextID, Ops: c.Ops}, nil
}

// Head implements catalog.Store.
func (s *Store) Head(ctx context.Context) (catalog.Revision, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM mandate_catalog_head WHERE id = 1`).Scan(&head); err != nil {
		return 0, translate(ctx, "read the head revision", err)
	}
	return catalog.Revision(head), nil
}

// appendSQL appends records $2 as revisions $1+1, $1+2, ... if $1 is
// the head, and NOTIFYs Channel with each payload of $3 (notifyPayloads):
// one statement, so that it needs no PL/pgSQL call. The UPDATE queues on the head row behind a concurrent
// appender and then re-checks its condition on the row that appender
// committed (READ COMMITTED): a stale base updates nothing, inserts
// nothing and returns no row. It is what mandate_catalog_append of the
// first schema version does, without the exception, so that the next
// statement of the same round trip can read what the winner wrote.
const appendSQL = `WITH head AS (
	UPDATE mandate_catalog_head SET revision = $1 + cardinality($2::bytea[]) WHERE id = 1 AND revision = $1
	RETURNING revision),
inserted AS (
	INSERT INTO mandate_catalog_changes (revision, record)
	SELECT $1 + r.i, r.record FROM head, unnest($2::bytea[]) WITH ORDINALITY AS r(record, i))
SELECT h.revision FROM head h,
	LATERAL (SELECT count(pg_notify('` + Channel + `', p)) FROM unnest($3::text[]) p WHERE h.revision > $1) n`

// lostSQL reads, in the transaction of a refused append (the same
// pipeline, a new snapshot), the head and the records after the base,
// for the Service to apply before it plans again; nothing when the
// append wrote (the head row it sees is then its own version).
const lostSQL = `SELECT h.revision, c.revision, c.record FROM mandate_catalog_head h
	LEFT JOIN LATERAL (SELECT revision, record FROM mandate_catalog_changes
		WHERE revision > $1 ORDER BY revision LIMIT $2) c ON true
	WHERE h.id = 1 AND h.xmin IS DISTINCT FROM xid(pg_current_xact_id_if_assigned())`

// changesSQL reads the head and the records after $1 (at most $2, NULL:
// all) in one statement.
const changesSQL = `SELECT h.revision, c.revision, c.record FROM mandate_catalog_head h
	LEFT JOIN LATERAL (SELECT revision, record FROM mandate_catalog_changes
		WHERE revision > $1 ORDER BY revision LIMIT $2) c ON true
	WHERE h.id = 1`

// lostPage bounds the records a refused append brings back.
const lostPage = 1024

// Append implements catalog.Store: appendSQL and lostSQL pipelined in one
// implicit transaction, one round trip (prepared statements, one commit
// and its WAL flush; synchronous_commit as the server says). A stale base
// is CodeConflict wrapping a *catalog.Conflict with the newer records.
func (s *Store) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	records, err := encodeRecords(base, changes)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(appendSQL, int64(base), records, s.notifyPayloads(base, records))
	b.Queue(lostSQL, int64(base), int64(lostPage))
	br := s.pool.SendBatch(ctx, b)
	var head int64
	err = br.QueryRow().Scan(&head)
	won := err == nil
	var lost *catalog.Conflict
	if errors.Is(err, pgx.ErrNoRows) {
		lost, err = scanLost(br, base, true)
	}
	// The commit is confirmed by the end of the pipeline (its Sync).
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return appendResult(ctx, won, lost, err)
}

// encodeRecords encodes the change records of an append on base.
func encodeRecords(base catalog.Revision, changes []catalog.Change) ([][]byte, error) {
	records := make([][]byte, len(changes))
	for i := range changes {
		if changes[i].Revision != base+catalog.Revision(i)+1 {
			return nil, catalog.Errorf(catalog.CodeInternal, "catalog store: change %d appended as revision %d", changes[i].Revision, base+catalog.Revision(i)+1)
		}
		b, err := json.Marshal(changes[i].Normalized())
		if err != nil {
			return nil, catalog.Internal(err, "encoding catalog changes")
		}
		records[i] = b
	}
	return records, nil
}

// appendResult is the outcome of an append: nil when it won, CodeConflict
// wrapping lost when it lost, else err as the Service expects it.
func appendResult(ctx context.Context, won bool, lost *catalog.Conflict, err error) error {
	switch {
	case err == nil && won:
		return nil
	case err == nil:
		if lost == nil {
			lost = &catalog.Conflict{}
		}
		return &catalog.Error{Code: catalog.CodeConflict, Msg: "could not serialize access due to concurrent update", Err: lost,
			Detail: "another replica committed a catalog change first", Hint: "retry the statement"}
	}
	var (
		pe   *pgconn.PgError
		ce   *catalog.Error
		dial *pgconn.ConnectError
	)
	if errors.As(err, &ce) { // an unreadable record of the winner
		return err
	}
	if ctx.Err() == nil && errors.As(err, &dial) {
		// No connection: nothing was sent. The driver's dial error (hosts,
		// users) is the server log's, not the client's.
		return &catalog.Error{Code: catalog.CodeUnavailable, Err: err,
			Msg: "catalog database unreachable, the change was not applied"}
	}
	if ctx.Err() == nil && !errors.As(err, &pe) && !pgconn.SafeToRetry(err) {
		// The connection failed after the call was sent: the commit may
		// have happened (the replica learns it from the change records).
		return &catalog.Error{Code: catalog.CodeUnavailable, Err: err,
			Msg: "catalog database connection lost during the commit; the change may or may not have been applied"}
	}
	return translate(ctx, "commit", err)
}

// headHoldTimeout bounds how long a writer may hold the head between
// LockHead and its append: PostgreSQL ends a session idle in its
// transaction for longer (a writer that hangs releases the head).
const headHoldTimeout = "10s"

// LockHead implements catalog.HeadLocker: one round trip on a connection
// of the pool that the HeldHead keeps: BEGIN, the head row locked (FOR
// UPDATE: behind the writer holding it, if any), and the head and the
// records after rev read by the next statement (a new snapshot, which
// sees what the writer before committed), without their audit part unless
// audit.
func (s *Store) LockHead(ctx context.Context, rev catalog.Revision, audit bool) (catalog.HeldHead, *catalog.Conflict, error) {
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, translate(ctx, "lock the head", err)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL idle_in_transaction_session_timeout = '" + headHoldTimeout + "'")
	b.Queue(`SELECT revision FROM mandate_catalog_head WHERE id = 1 FOR UPDATE`)
	b.Queue(changesSQL, int64(rev), int64(lostPage))
	br := conn.SendBatch(ctx, b)
	var c *catalog.Conflict
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		var head int64
		err = br.QueryRow().Scan(&head)
	}
	if err == nil {
		c, err = scanLost(br, rev, audit)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	h := &heldHead{conn: conn, s: s}
	if err != nil {
		h.Release()
		var ce *catalog.Error
		if errors.As(err, &ce) {
			return nil, nil, err
		}
		return nil, nil, translate(ctx, "lock the head", err)
	}
	return h, c, nil
}

// heldHead is a transaction holding the head row's lock.
type heldHead struct {
	conn *pgxpool.Conn // nil once released
	s    *Store
}

// Append implements catalog.HeldHead: appendSQL and COMMIT, one round
// trip.
func (h *heldHead) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if h.conn == nil {
		return catalog.Errorf(catalog.CodeInternal, "catalog store: append on a released head")
	}
	defer h.Release()
	records, err := encodeRecords(base, changes)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(appendSQL, int64(base), records, h.s.notifyPayloads(base, records))
	b.Queue("COMMIT")
	br := h.conn.SendBatch(ctx, b)
	var head int64
	err = br.QueryRow().Scan(&head)
	won := err == nil
	if errors.Is(err, pgx.ErrNoRows) { // base is not the head: nothing written
		err = nil
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return appendResult(ctx, won, nil, err)
}

// Release implements catalog.HeldHead: the transaction is rolled back and
// the connection returned to the pool (or closed, if that failed).
func (h *heldHead) Release() {
	conn := h.conn
	if conn == nil {
		return
	}
	h.conn = nil
	if conn.Conn().PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = conn.Exec(ctx, "ROLLBACK")
		cancel()
	}
	conn.Release() // the pool closes a connection still in a transaction
}

// scanLost reads lostSQL's rows: the head and the records after base
// (without their audit part unless audit).
func scanLost(br pgx.BatchResults, base catalog.Revision, audit bool) (*catalog.Conflict, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	c := &catalog.Conflict{}
	for rows.Next() {
		var head int64
		var rev *int64
		var body []byte
		if err := rows.Scan(&head, &rev, &body); err != nil {
			return nil, err
		}
		c.Head = catalog.Revision(head)
		if rev == nil {
			continue
		}
		decodeRecord := decode
		if !audit {
			decodeRecord = decodeOps
		}
		ch, err := decodeRecord(*rev, body)
		if err != nil {
			return nil, err
		}
		c.Newer = append(c.Newer, ch)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(c.Newer) > 0 && c.Newer[0].Revision != base+1 {
		c.Newer = nil // pruned: the Service reads (and reloads) itself
	}
	return c, nil
}

// Changes implements catalog.Store: the head and the records in one
// statement (one snapshot), so that a gap is told from a later append.
func (s *Store) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var lim any
	if limit > 0 {
		lim = int64(limit)
	}
	rows, err := s.pool.Query(ctx, changesSQL, int64(after), lim)
	if err != nil {
		return nil, translate(ctx, "read change records", err)
	}
	defer rows.Close()
	var (
		head int64
		out  []catalog.Change
	)
	for rows.Next() {
		var rev *int64
		var body []byte
		if err := rows.Scan(&head, &rev, &body); err != nil {
			return nil, translate(ctx, "read change records", err)
		}
		if rev == nil {
			continue
		}
		c, err := decode(*rev, body)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(ctx, "read change records", err)
	}
	if catalog.Revision(head) <= after {
		return nil, nil
	}
	if len(out) == 0 || out[0].Revision != after+1 {
		return nil, catalog.ErrPruned
	}
	return out, nil
}

// WriteSnapshot implements catalog.Store. Replicas may write the same
// revision: the first one stays. The newest two snapshots are kept.
func (s *Store) WriteSnapshot(ctx context.Context, st *catalog.State) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	body, err := json.Marshal(st.Normalized())
	if err != nil {
		return catalog.Internal(err, "encoding the catalog snapshot")
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return translate(ctx, "write the snapshot", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var head int64
	if err := tx.QueryRow(ctx, `SELECT revision FROM mandate_catalog_head WHERE id = 1`).Scan(&head); err != nil {
		return translate(ctx, "write the snapshot", err)
	}
	if int64(st.Revision) > head {
		return catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: snapshot of revision %d beyond the newest (%d)", st.Revision, head)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mandate_catalog_snapshots (revision, state) VALUES ($1, $2)
		ON CONFLICT (revision) DO NOTHING`, int64(st.Revision), body); err != nil {
		return translate(ctx, "write the snapshot", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM mandate_catalog_snapshots WHERE revision <
		(SELECT revision FROM mandate_catalog_snapshots ORDER BY revision DESC OFFSET 1 LIMIT 1)`); err != nil {
		return translate(ctx, "write the snapshot", err)
	}
	return translate(ctx, "write the snapshot", tx.Commit(ctx))
}

// Prune implements catalog.Store: records up to through that a snapshot
// covers and that are older than Options.KeepChanges are deleted. The
// records are committed in revision order, so the deletion stops at the
// first young one: it reads the records it deletes and one more, not the
// hour of records it keeps (every replica prunes after each snapshot).
func (s *Store) Prune(ctx context.Context, through catalog.Revision) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM mandate_catalog_changes
		WHERE revision <= least($1, (SELECT coalesce(max(revision), 0) FROM mandate_catalog_snapshots))
		  AND revision < coalesce((SELECT revision FROM mandate_catalog_changes
			WHERE committed_at >= now() - $2::interval ORDER BY revision LIMIT 1), $1 + 1)
		  AND committed_at < now() - $2::interval`, int64(through), s.opts.KeepChanges)
	return translate(ctx, "prune change records", err)
}

// Pool is the store's connection pool (Options.MaxConns connections), for
// other state of the same Mandate in the same database (the rate-limit
// and budget leases) to share: one connection string, one pool, one
// reconnect policy. Its users must not touch the mandate_catalog_ tables;
// the pool is closed by Close.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close implements catalog.Store.
func (s *Store) Close() error {
	s.once.Do(func() {
		s.closed.Store(true)
		s.stop()
		<-s.stopped
		s.pool.Close()
	})
	return nil
}

// translate turns an error of the driver into a *catalog.Error: a done
// context wraps ctx's error; 40001 (and deadlocks) are CodeConflict; the
// server shutting down, refusing connections or out of them, and any
// failure to reach it are CodeUnavailable (SQLSTATE 57P03 for clients).
func translate(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog database: " + op + ": " + cerr.Error(), Err: cerr}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "40001" || pe.Code == "40P01":
			return &catalog.Error{Code: catalog.CodeConflict, Msg: "could not serialize access due to concurrent update", Err: err,
				Detail: "another replica committed a catalog change first", Hint: "retry the statement"}
		case pe.Code == "53300" || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || len(pe.Code) == 5 && pe.Code[:2] == "08":
			return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog database unavailable: " + pe.Message, Err: err}
		}
		return &catalog.Error{Code: catalog.CodeInternal, Msg: "catalog database: " + op + ": " + pe.Message, Err: err}
	}
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "catalog database unreachable: " + op + ": " + err.Error(), Err: err}
}
