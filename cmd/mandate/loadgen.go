package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// loadgen runs "mandate loadgen WORKLOAD [flags]" against a running Mandate.
func loadgen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		loadgenUsage(stderr)
		return 2
	}
	switch args[0] {
	case "grants":
		err := loadgenGrants(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errHelp):
			return 0
		}
		fmt.Fprintln(stderr, "mandate loadgen grants:", err)
		return 1
	case "help", "-h", "--help":
		loadgenUsage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "mandate loadgen: unknown workload %q\n\n", args[0])
	loadgenUsage(stderr)
	return 2
}

func loadgenUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  mandate loadgen grants [flags]   GRANT/REVOKE USE_CONNECTION in a loop over the wire

Run "mandate loadgen grants --help" for the flags.
`)
}

type loadgenConfig struct {
	addr        string
	user        string
	password    string
	database    string
	sslmode     string
	clients     int
	connections int
	duration    time.Duration
	cleanup     bool
}

func parseLoadgenFlags(args []string, stderr io.Writer) (*loadgenConfig, error) {
	c := &loadgenConfig{}
	fs := flag.NewFlagSet("loadgen grants", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:15432", "HOST:PORT of Mandate's SQL endpoint")
	fs.StringVar(&c.user, "user", "admin", "user to log in as (needs the right to create groups and connections)")
	fs.StringVar(&c.password, "password", "", "password of --user (default: $PGPASSWORD)")
	fs.StringVar(&c.database, "database", "system", "database (catalog) to connect to")
	fs.StringVar(&c.sslmode, "sslmode", "require", "libpq sslmode: disable, require, verify-ca, verify-full")
	fs.IntVar(&c.clients, "clients", 8, "concurrent client connections, each running one statement at a time")
	fs.IntVar(&c.connections, "connections", 4, "Mandate connections per client that the client grants and revokes on")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to run")
	fs.BoolVar(&c.cleanup, "cleanup", true, "drop the group and connections created for the run at the end")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: mandate loadgen grants [flags]

Creates a group and --clients × --connections MCP connections, then every
client loops GRANT / REVOKE USE_CONNECTION ON CONNECTION <one of its own> TO
the group for --duration, one statement at a time. Every statement is durable
when it returns. Prints the statements per second and the latency percentiles.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	if c.password == "" {
		c.password = os.Getenv("PGPASSWORD")
	}
	switch {
	case c.clients < 1:
		return nil, fmt.Errorf("--clients must be at least 1, got %d", c.clients)
	case c.connections < 1:
		return nil, fmt.Errorf("--connections must be at least 1, got %d", c.connections)
	case c.duration <= 0:
		return nil, fmt.Errorf("--duration must be positive, got %s", c.duration)
	}
	if _, _, err := net.SplitHostPort(c.addr); err != nil {
		return nil, fmt.Errorf("invalid --addr %q: %w", c.addr, err)
	}
	return c, nil
}

// connValue quotes a value of a libpq keyword/value connection string.
func connValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func (c *loadgenConfig) connect(ctx context.Context) (*pgx.Conn, error) {
	host, port, _ := net.SplitHostPort(c.addr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=%s connect_timeout=30",
		connValue(host), connValue(port), connValue(c.user), connValue(c.database), connValue(c.sslmode)))
	if err != nil {
		return nil, err
	}
	cfg.Password = c.password
	cfg.RuntimeParams["application_name"] = "mandate loadgen"
	return pgx.ConnectConfig(ctx, cfg)
}

// quoteIdent double-quotes a SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// loadgenResult is what one client measured.
type loadgenResult struct {
	latencies []time.Duration // of the successful statements
	errors    int
	firstErr  error
	// conflicts counts statements refused with 40001 (a replicated catalog
	// where another replica committed first) and sent again.
	conflicts int
}

func loadgenGrants(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseLoadgenFlags(args, stderr)
	if err != nil {
		return err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	prefix := "loadgen_" + hex.EncodeToString(suffix)
	group := prefix
	connName := func(client, k int) string { return fmt.Sprintf("%s_c%d_%d", prefix, client, k) }

	setupCtx, cancelSetup := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSetup()
	admin, err := cfg.connect(setupCtx)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", cfg.addr, err)
	}
	defer admin.Close(context.Background())

	// Setup in one simple-protocol round trip.
	var setup strings.Builder
	fmt.Fprintf(&setup, "CREATE GROUP %s;\n", quoteIdent(group))
	for i := range cfg.clients {
		for k := range cfg.connections {
			fmt.Fprintf(&setup, "CREATE CONNECTION %s TYPE MCP OPTIONS (url 'https://loadgen.invalid/mcp');\n", quoteIdent(connName(i, k)))
		}
	}
	if _, err := admin.Exec(setupCtx, setup.String()); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if cfg.cleanup {
		defer func() {
			var drop strings.Builder
			for i := range cfg.clients {
				for k := range cfg.connections {
					fmt.Fprintf(&drop, "DROP CONNECTION IF EXISTS %s;\n", quoteIdent(connName(i, k)))
				}
			}
			fmt.Fprintf(&drop, "DROP GROUP IF EXISTS %s;\n", quoteIdent(group))
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, err := admin.Exec(cctx, drop.String()); err != nil {
				fmt.Fprintln(stderr, "mandate loadgen grants: cleanup:", err)
			}
		}()
	}

	conns := make([]*pgx.Conn, cfg.clients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	{
		var wg sync.WaitGroup
		errs := make([]error, cfg.clients)
		for i := range conns {
			wg.Go(func() { conns[i], errs[i] = cfg.connect(setupCtx) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("connect clients: %w", err)
		}
	}

	fmt.Fprintf(stdout, "mandate loadgen grants: %d clients × %d connections, %s against %s\n",
		cfg.clients, cfg.connections, cfg.duration, cfg.addr)
	results := make([]loadgenResult, cfg.clients)
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			results[i] = runGrantClient(runCtx, conns[i], deadline, group, cfg.connections, func(k int) string { return connName(i, k) })
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	errCount, conflicts := 0, 0
	var firstErr error
	for _, r := range results {
		all = append(all, r.latencies...)
		errCount += r.errors
		conflicts += r.conflicts
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	slices.Sort(all)
	fmt.Fprintf(stdout, "statements      %d\n", len(all))
	fmt.Fprintf(stdout, "errors          %d\n", errCount)
	if conflicts > 0 {
		fmt.Fprintf(stdout, "40001 retried   %d\n", conflicts)
	}
	fmt.Fprintf(stdout, "elapsed         %.3fs\n", elapsed.Seconds())
	fmt.Fprintf(stdout, "statements/s    %.1f\n", float64(len(all))/elapsed.Seconds())
	fmt.Fprintf(stdout, "latency p50     %s\n", fmtLatency(percentile(all, 0.50)))
	fmt.Fprintf(stdout, "latency p99     %s\n", fmtLatency(percentile(all, 0.99)))
	fmt.Fprintf(stdout, "latency max     %s\n", fmtLatency(percentile(all, 1)))
	if firstErr != nil {
		return fmt.Errorf("%d statements failed; first: %w", errCount, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return nil
}

// runGrantClient alternates GRANT and REVOKE on each of the client's n
// connections, round robin, until deadline.
func runGrantClient(ctx context.Context, conn *pgx.Conn, deadline time.Time, group string, n int, connName func(int) string) loadgenResult {
	var r loadgenResult
	granted := make([]bool, n)
	to := quoteIdent(group)
	for i := 0; ctx.Err() == nil && time.Now().Before(deadline); i++ {
		k := i % n
		var sql string
		if granted[k] {
			sql = "REVOKE USE_CONNECTION ON CONNECTION " + quoteIdent(connName(k)) + " FROM " + to
		} else {
			sql = "GRANT USE_CONNECTION ON CONNECTION " + quoteIdent(connName(k)) + " TO " + to
		}
		t0 := time.Now()
		_, err := conn.Exec(ctx, sql) // no arguments: one simple-protocol round trip
		d := time.Since(t0)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "40001" {
				r.conflicts++ // sent again at its connection's next turn
				continue
			}
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			if conn.IsClosed() {
				break
			}
			continue
		}
		granted[k] = !granted[k]
		r.latencies = append(r.latencies, d)
	}
	return r
}

// percentile returns the nearest-rank percentile p (0 < p <= 1) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func fmtLatency(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
