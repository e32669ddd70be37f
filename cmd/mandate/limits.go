package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// limitsConfig holds serve's resource limits of the SQL endpoint and its
// query engine (PostgreSQL's names where PostgreSQL has the setting).
type limitsConfig struct {
	maxMemory            byteSize
	maxConcurrentQueries int
	maxQueriesPerUser    int
	// queryThreads is DuckDB's worker threads (--query-threads).
	queryThreads int

	maxConnections         int
	superuserReserved      int
	maxStartupConns        int
	maxStartupConnsPerHost int
	authenticationTimeout  time.Duration
	idleSessionTimeout     time.Duration
	messageTimeout         time.Duration
	allowCleartextLoopback bool
}

// Defaults of the limits that have no default elsewhere.
const (
	defaultMaxMemory = 2 << 30
	minMaxMemory     = 256 << 20
)

func (l *limitsConfig) register(fs *flag.FlagSet) {
	l.maxMemory = defaultMaxMemory
	fs.Var(&l.maxMemory, "max-memory", "memory ceiling of the server (e.g. 2GiB, 512MiB): half for the query engine (DuckDB memory_limit; "+
		"as much disk to spill to), a quarter as Go's soft limit; past 90% running SQL queries are canceled (53200)")
	fs.IntVar(&l.maxConcurrentQueries, "max-concurrent-queries", sqlfront.DefaultMaxConcurrentQueries,
		"SQL queries over system tables running at once; one slot is kept for metastore admins, more wait")
	fs.IntVar(&l.maxQueriesPerUser, "max-queries-per-user", sqlfront.DefaultMaxQueriesPerUser,
		"SQL queries over system tables one user (not a metastore admin) runs at once; more wait")
	fs.IntVar(&l.queryThreads, "query-threads", max(1, runtime.NumCPU()/2),
		"worker threads of the query engine (DuckDB's threads), which also stores the audit log's events: "+
			"at most this many cores go to a query or an audit apply, the rest stay with the gateway (default: half the cores, at least 1)")
	fs.IntVar(&l.maxConnections, "max-connections", pgwire.DefaultMaxConnections,
		"SQL sessions at once (PostgreSQL's max_connections); more are refused with 53300")
	fs.IntVar(&l.superuserReserved, "superuser-reserved-connections", pgwire.DefaultSuperuserReservedConnections,
		"of --max-connections, sessions kept for metastore admins")
	fs.IntVar(&l.maxStartupConns, "max-startup-connections", pgwire.DefaultMaxStartupConnections,
		"SQL connections not yet logged in, in total; more are refused with 53300")
	fs.IntVar(&l.maxStartupConnsPerHost, "max-startup-connections-per-host", pgwire.DefaultMaxStartupConnectionsPerHost,
		"SQL connections not yet logged in, per client IP address")
	fs.DurationVar(&l.authenticationTimeout, "authentication-timeout", pgwire.DefaultStartupTimeout,
		"time from connect to login on the SQL endpoint, TLS included (PostgreSQL's authentication_timeout)")
	fs.DurationVar(&l.idleSessionTimeout, "idle-session-timeout", 0,
		"end SQL sessions idle outside a transaction longer than this (PostgreSQL's idle_session_timeout; 0 = never)")
	fs.DurationVar(&l.messageTimeout, "message-timeout", pgwire.DefaultMessageTimeout,
		"time a logged-in SQL client has to send the rest of a message it began")
	fs.BoolVar(&l.allowCleartextLoopback, "allow-cleartext-loopback", false,
		"let SQL clients on a loopback address log in without TLS (local tools); elsewhere passwords require TLS")
}

func (l *limitsConfig) validate() error {
	if l.maxMemory < minMaxMemory {
		return fmt.Errorf("--max-memory (%s) must be at least 256MiB", envName("max-memory"))
	}
	for _, v := range []struct {
		flag string
		n    int
		min  int
	}{
		{"max-concurrent-queries", l.maxConcurrentQueries, 2}, {"max-queries-per-user", l.maxQueriesPerUser, 1}, {"query-threads", l.queryThreads, 1},
		{"max-connections", l.maxConnections, 1}, {"superuser-reserved-connections", l.superuserReserved, 0},
		{"max-startup-connections", l.maxStartupConns, 1}, {"max-startup-connections-per-host", l.maxStartupConnsPerHost, 1},
	} {
		if v.n < v.min {
			return fmt.Errorf("--%s (%s) must be at least %d", v.flag, envName(v.flag), v.min)
		}
	}
	if l.superuserReserved >= l.maxConnections {
		return fmt.Errorf("--superuser-reserved-connections (%d) must be less than --max-connections (%d)",
			l.superuserReserved, l.maxConnections)
	}
	for _, v := range []struct {
		flag string
		d    time.Duration
	}{{"authentication-timeout", l.authenticationTimeout}, {"message-timeout", l.messageTimeout}} {
		if v.d <= 0 {
			return fmt.Errorf("--%s (%s) must be positive", v.flag, envName(v.flag))
		}
	}
	if l.idleSessionTimeout < 0 {
		return fmt.Errorf("--idle-session-timeout (%s) must not be negative", envName("idle-session-timeout"))
	}
	return nil
}

// storeOptions sizes the embedded store's memory and spill space.
func (l *limitsConfig) storeOptions(o duckstore.Options) duckstore.Options {
	o.MemoryLimit = strconv.FormatInt(int64(l.maxMemory)/2>>20, 10) + "MiB"
	o.MaxTempDirectorySize = strconv.FormatInt(int64(l.maxMemory)>>20, 10) + "MiB"
	o.Threads = l.queryThreads
	return o
}

// queryOptions sizes the query engine's pool: a connection per query slot
// and one for the server's own work (audit retention).
func (l *limitsConfig) queryOptions(o duckstore.QueryOptions) duckstore.QueryOptions {
	o.MaxConns = l.maxConcurrentQueries + 1
	return o
}

func (l *limitsConfig) frontend(c *sqlfront.Config) {
	c.QueryLimits = sqlfront.QueryLimits{MaxConcurrent: l.maxConcurrentQueries, AdminReserved: 1,
		PerUser: l.maxQueriesPerUser, MemoryCeiling: int64(l.maxMemory) / 10 * 9}
}

func (l *limitsConfig) server(c *pgwire.Config) {
	c.MaxConnections, c.SuperuserReservedConnections = l.maxConnections, l.superuserReserved
	if l.superuserReserved == 0 {
		c.SuperuserReservedConnections = -1 // none (0 is pgwire's default)
	}
	c.MaxStartupConnections, c.MaxStartupConnectionsPerHost = l.maxStartupConns, l.maxStartupConnsPerHost
	c.StartupTimeout, c.IdleSessionTimeout, c.MessageTimeout = l.authenticationTimeout, l.idleSessionTimeout, l.messageTimeout
	c.AllowCleartextLoopback = l.allowCleartextLoopback
}

// goGCPercent is the collector's GOGC: audit ingestion allocates per
// event, and a less eager collector cut its CPU per event by ~15%
// (BENCHMARKS.md). The live heap is small (about 25 MB under load), so the
// heap's target is 9x it: about 200 MB, a cycle every several seconds at
// 1,000 calls/s.
const goGCPercent = 800

// setGoGC sets Go's collector: GOGC goGCPercent and a soft limit of a
// quarter of the ceiling; the GOGC and GOMEMLIMIT variables, when set,
// win.
func (l *limitsConfig) setGoGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(goGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(l.maxMemory) / 4)
	}
}

// byteSize is a flag value in bytes: a number with an optional unit, B,
// kB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (powers of 1024).
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	v := int64(*b)
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.n == 0 {
			return strconv.FormatInt(v/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(v, 10) + "B"
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') && s[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(s[:i]), strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	x, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || x < 0 || math.IsInf(x, 0) || math.IsNaN(x) || x*mult > math.MaxInt64/2 {
		return fmt.Errorf("%q is not a size (a number of bytes, optionally with kB, MB, GB, TB, KiB, MiB, GiB or TiB, such as 2GiB)", s)
	}
	*b = byteSize(x * mult)
	return nil
}
