package sqlfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// Limits of the SQL front end: the statement timeout of sessions and the
// admission of queries to the query engine.
//
// statement_timeout starts at the server's limit (Config.StatementTimeout)
// and is changed with SET like PostgreSQL's; a session of a user who is
// not a metastore admin may lower it but not raise it above the limit (or
// turn it off): 42501. The value is kept and shown (SHOW, current_setting)
// in PostgreSQL's form ("30s", "1500ms", "0"), and pgwire enforces it on
// each statement (Session.StatementTimeout).
//
// Queries over system tables wait for a slot of the engine (QueryLimits):
// at most MaxConcurrent run at once, of which AdminReserved only for
// metastore admins, and at most PerUser for any other user; waiting counts
// against the statement timeout. While queries run, a watchdog samples the
// process's resident memory; above MemoryCeiling it cancels the running
// queries with 53200, the users' first and the admins' only when no user
// query runs.

// QueryLimits bound the queries that run on the query engine.
type QueryLimits struct {
	// MaxConcurrent is the number of queries on the engine at once
	// (default DefaultMaxConcurrentQueries). The engine needs as many
	// connections.
	MaxConcurrent int
	// AdminReserved of MaxConcurrent are kept for metastore admins
	// (default 1; negative means none), so that users' queries never make
	// an admin wait.
	AdminReserved int
	// PerUser bounds the queries of one user who is not a metastore admin
	// (default DefaultMaxQueriesPerUser).
	PerUser int
	// MemoryCeiling is the resident memory of the process (bytes) above
	// which running queries are cancelled with 53200; 0 = no watchdog.
	MemoryCeiling int64
}

// Defaults of QueryLimits.
const (
	DefaultMaxConcurrentQueries = 4
	DefaultMaxQueriesPerUser    = 2
	// memorySampleInterval is how often the watchdog reads the resident
	// memory while queries run.
	memorySampleInterval = 20 * time.Millisecond
)

func (l QueryLimits) withDefaults() QueryLimits {
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultMaxConcurrentQueries
	}
	switch {
	case l.AdminReserved == 0:
		l.AdminReserved = 1
	case l.AdminReserved < 0:
		l.AdminReserved = 0
	}
	l.AdminReserved = min(l.AdminReserved, l.MaxConcurrent-1)
	if l.PerUser <= 0 {
		l.PerUser = DefaultMaxQueriesPerUser
	}
	return l
}

// ---------------------------------------------------------------------------
// statement_timeout

// maxTimeoutMs is the largest statement_timeout PostgreSQL accepts.
const maxTimeoutMs = math.MaxInt32

// parseTimeout parses a value of statement_timeout as PostgreSQL does: a
// number of milliseconds, or a number with one of the units us, ms, s,
// min, h and d; fractions are rounded to milliseconds.
func parseTimeout(v string) (time.Duration, error) {
	ms, err := parseTimeoutMs(v)
	if err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}

func parseTimeoutMs(v string) (int64, error) {
	v = strings.TrimSpace(strings.ToLower(v))
	i := len(v)
	for i > 0 && v[i-1] >= 'a' && v[i-1] <= 'z' {
		i--
	}
	num, unit := strings.TrimSpace(v[:i]), v[i:]
	if unit == "" {
		unit = "ms"
	}
	per, ok := map[string]float64{"us": 0.001, "ms": 1, "s": 1e3, "min": 6e4, "h": 3.6e6, "d": 8.64e7}[unit]
	x, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, errors.New("bad timeout")
	}
	ms := math.RoundToEven(x * per)
	if ms < 0 || ms > maxTimeoutMs {
		return int64(max(min(ms, 1e18), -1e18)), errOutOfRange
	}
	return int64(ms), nil
}

var errOutOfRange = errors.New("out of range")

// formatTimeout renders a timeout as PostgreSQL's SHOW does: in the
// largest unit that represents it exactly ("30s", "1500ms", "5min", "0").
func formatTimeout(d time.Duration) string {
	ms := d.Milliseconds()
	if ms <= 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		ms   int64
	}{{"d", 86_400_000}, {"h", 3_600_000}, {"min", 60_000}, {"s", 1000}} {
		if ms%u.ms == 0 {
			return strconv.FormatInt(ms/u.ms, 10) + u.name
		}
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

// normalizeStatementTimeout validates a new value of statement_timeout for
// the session's user and returns it in PostgreSQL's form.
func (s *Session) normalizeStatementTimeout(value string) (string, error) {
	ms, err := parseTimeoutMs(value)
	switch {
	case errors.Is(err, errOutOfRange):
		return "", pgwire.Errorf("22023", "%d ms is outside the valid range for parameter \"statement_timeout\" (0 .. %d)", ms, maxTimeoutMs)
	case err != nil:
		return "", pgwire.Errorf("22023", "invalid value for parameter \"statement_timeout\": %q", value)
	}
	d := time.Duration(ms) * time.Millisecond
	if lim := s.f.stmtTimeout; lim > 0 && (d == 0 || d > lim) && !s.f.isAdmin(s.user) {
		return "", &pgwire.Error{Severity: "ERROR", Code: "42501",
			Message: fmt.Sprintf("permission denied to set parameter \"statement_timeout\" to %s", formatTimeout(d)),
			Detail:  fmt.Sprintf("The server limits statements to %s (--statement-timeout); only metastore admins may set a longer timeout or none.", formatTimeout(lim)),
			Hint:    "SET statement_timeout to a value up to the limit."}
	}
	return formatTimeout(d), nil
}

// StatementTimeout implements pgwire.StatementTimeouter: the session's
// statement_timeout, never above the server's limit for a user who is not
// a metastore admin (the user may have lost that role since the SET).
func (s *Session) StatementTimeout() time.Duration {
	v, _ := s.getParam("statement_timeout")
	d, err := parseTimeout(v)
	lim := s.f.stmtTimeout
	if err != nil {
		return lim
	}
	if lim > 0 && (d == 0 || d > lim) && !s.f.isAdmin(s.user) {
		return lim
	}
	return d
}

// isAdmin reports whether user is a metastore admin now.
func (f *Frontend) isAdmin(user string) (admin bool) {
	f.cat.Read(func(m *catalog.Model) {
		if p, ok := m.PrincipalByName(user); ok && p.Kind != catalog.KindGroup {
			admin = m.IsAdmin(p.ID)
		}
	})
	return admin
}

// IsSuperuser implements pgwire.Superusers: metastore admins may use the
// connections reserved for superusers.
func (f *Frontend) IsSuperuser(_ context.Context, user string) bool { return f.isAdmin(user) }

// ---------------------------------------------------------------------------
// Admission to the query engine

// queryUserKey is the context key of the user a query runs for.
type queryUserKey struct{}

// withQueryUser marks ctx as the context of a query of user.
func withQueryUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, queryUserKey{}, user)
}

// admittedEngine is a catalog.QueryEngine that admits each call through
// an admission before it reaches the engine.
type admittedEngine struct {
	q catalog.QueryEngine
	a *admission
}

var _ catalog.QueryEngine = admittedEngine{}

func (e admittedEngine) Describe(ctx context.Context, q catalog.Query) (cols []catalog.QueryColumn, params []catalog.ColumnType, err error) {
	err = e.a.run(ctx, false, func(ctx context.Context) error {
		var err error
		cols, params, err = e.q.Describe(ctx, q)
		return err
	})
	return cols, params, err
}

func (e admittedEngine) Dialect() catalog.QueryDialect { return e.q.Dialect() }

func (e admittedEngine) Query(ctx context.Context, q catalog.Query, row func([]any) error) error {
	return e.a.run(ctx, true, func(ctx context.Context) error { return e.q.Query(ctx, q, row) })
}

// admission hands out the engine's query slots and watches memory.
type admission struct {
	lim     QueryLimits
	isAdmin func(user string) bool
	log     zerolog.Logger
	rss     func() (int64, error) // resident memory of the process

	mu       sync.Mutex
	running  map[*admitted]struct{}
	waiting  int            // queries waiting for a slot
	users    int            // running queries of users who are not admins
	perUser  map[string]int // running queries per such user
	wake     chan struct{}  // closed (and replaced) when a slot is freed
	watching bool           // the watchdog goroutine runs
}

// admitted is one running query.
type admitted struct {
	user     string
	admin    bool
	execute  bool // a query's execution, not its description
	cancel   context.CancelCauseFunc
	canceled bool
}

func newAdmission(lim QueryLimits, isAdmin func(string) bool, log zerolog.Logger) *admission {
	return &admission{lim: lim.withDefaults(), isAdmin: isAdmin, log: log, rss: residentMemory,
		running: map[*admitted]struct{}{}, perUser: map[string]int{}, wake: make(chan struct{})}
}

// run runs fn once a slot is free for ctx's user, in a context the
// watchdog may cancel. Waiting ends with ctx; a ctx already done never
// takes a slot. execute tells a query's execution from its description
// (each takes a slot of its own while it runs).
func (a *admission) run(ctx context.Context, execute bool, fn func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	user, _ := ctx.Value(queryUserKey{}).(string) // none: an anonymous user
	q := &admitted{user: user, admin: user != "" && a.isAdmin(user), execute: execute}
	waited := false
	for {
		a.mu.Lock()
		if a.fits(q) {
			if waited {
				a.waiting--
			}
			break
		}
		if !waited {
			waited = true
			a.waiting++
		}
		wake := a.wake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			a.mu.Lock()
			a.waiting--
			a.mu.Unlock()
			return ctx.Err()
		}
	}
	qctx, cancel := context.WithCancelCause(ctx)
	q.cancel = cancel
	a.running[q] = struct{}{}
	if !q.admin {
		a.users++
		a.perUser[q.user]++
	}
	if a.lim.MemoryCeiling > 0 && !a.watching {
		a.watching = true
		go a.watch()
	}
	a.mu.Unlock()

	err := fn(qctx)
	if cause := context.Cause(qctx); err != nil && qctx.Err() != nil && ctx.Err() == nil && cause != nil {
		err = cause // the watchdog's 53200
	}
	cancel(nil)

	a.mu.Lock()
	delete(a.running, q)
	if !q.admin {
		a.users--
		if a.perUser[q.user]--; a.perUser[q.user] <= 0 {
			delete(a.perUser, q.user)
		}
	}
	close(a.wake)
	a.wake = make(chan struct{})
	a.mu.Unlock()
	return err
}

// fits reports whether q may start now. Called with a.mu held.
func (a *admission) fits(q *admitted) bool {
	if len(a.running) >= a.lim.MaxConcurrent {
		return false
	}
	if q.admin {
		return true
	}
	return a.users < a.lim.MaxConcurrent-a.lim.AdminReserved && a.perUser[q.user] < a.lim.PerUser
}

// watch samples the resident memory while queries run and sheds queries
// above the ceiling.
func (a *admission) watch() {
	t := time.NewTicker(memorySampleInterval)
	defer t.Stop()
	for range t.C {
		a.mu.Lock()
		if len(a.running) == 0 {
			a.watching = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		rss, err := a.rss()
		if err != nil {
			a.log.Warn().Err(err).Msg("memory watchdog off: cannot read the resident memory")
			a.mu.Lock()
			a.lim.MemoryCeiling = 0
			a.watching = false
			a.mu.Unlock()
			return
		}
		if rss > a.lim.MemoryCeiling {
			a.shed(rss)
		}
	}
}

// shed cancels running queries with 53200: the users' while any runs
// (cancelled ones may take a moment to stop), else the admins'.
func (a *admission) shed(rss int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	admins := a.users == 0
	n := 0
	for q := range a.running {
		if q.admin == admins && !q.canceled {
			q.canceled = true
			q.cancel(outOfMemoryError(rss, a.lim.MemoryCeiling))
			n++
		}
	}
	if n > 0 {
		a.log.Warn().Int64("rss_mib", rss>>20).Int64("ceiling_mib", a.lim.MemoryCeiling>>20).Int("canceled", n).
			Bool("admin_queries", admins).Msg("memory ceiling reached: running queries canceled")
	}
}

func outOfMemoryError(rss, ceiling int64) *pgwire.Error {
	return &pgwire.Error{Severity: "ERROR", Code: "53200", Message: "out of memory",
		Detail: fmt.Sprintf("The server's memory use (%d MiB) went above its limit (%d MiB, from --max-memory); running queries were canceled.", rss>>20, ceiling>>20),
		Hint:   "Reduce the data the query builds at once (narrower time range, fewer or shorter values, LIMIT)."}
}

// residentMemory returns the resident set size of this process (Linux).
func residentMemory() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, errors.New("unexpected /proc/self/statm")
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}
