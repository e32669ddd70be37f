package sqlfront_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
	"github.com/mandatehq/mandate/sqlfront"
)

// BenchmarkShowGrants measures SHOW GRANTS ON CONNECTION over the wire
// (TLS, pgx) on the large catalog (10,000 users, 1,000 groups nested 5
// deep, 100,000 grants), as the admin, who sees every row: a connection
// carries its own grants and those inherited from its schema and catalog.
// Each sub-benchmark reports the p50 and p99 latency of one statement
// (send, execute, receive every row) in microseconds and the rows per
// statement. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkShowGrants -benchtime 2000x ./sqlfront/
func BenchmarkShowGrants(b *testing.B) {
	f := startFrontend(b)
	start := time.Now()
	built, err := catalogtest.Build(b.Context(), f.Svc, catalogtest.Large)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("built the large catalog in %v", time.Since(start).Round(time.Millisecond))
	dotted := func(path []string) string { return strings.Join(path, ".") }
	r := rand.New(rand.NewPCG(11, 12))
	random := make([]string, 4096)
	for i := range random {
		random[i] = "SHOW GRANTS ON CONNECTION " + dotted(built.Connections[r.IntN(len(built.Connections))])
	}
	const conn0 = "SHOW GRANTS ON CONNECTION cat0.schema0.conn0"
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{
		// extended: Parse/Describe once per distinct text (pgx's statement
		// cache), then Bind/Execute; simple: one Query message each time.
		{"extended", pgx.QueryExecModeCacheStatement},
		{"simple", pgx.QueryExecModeSimpleProtocol},
	}
	for _, m := range modes {
		for _, q := range []struct {
			name  string
			query func(i int) string
		}{
			{"conn0", func(int) string { return conn0 }},
			{"random", func(i int) string { return random[i%len(random)] }},
		} {
			b.Run(q.name+"/"+m.name, func(b *testing.B) {
				conn := f.admin(b)
				ctx := b.Context()
				lat := make([]time.Duration, 0, 4096)
				var rowsTotal int
				for i := 0; b.Loop(); i++ {
					sql := q.query(i)
					t0 := time.Now()
					rows, err := conn.Query(ctx, sql, m.mode)
					if err != nil {
						b.Fatalf("%s: %v", sql, err)
					}
					for rows.Next() {
						rowsTotal++
					}
					rows.Close()
					if err := rows.Err(); err != nil {
						b.Fatalf("%s: %v", sql, err)
					}
					lat = append(lat, time.Since(t0))
				}
				if len(lat) == 0 {
					return
				}
				slices.Sort(lat)
				us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
				b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
				b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
				b.ReportMetric(float64(rowsTotal)/float64(len(lat)), "rows/op")
			})
		}
	}
}

// BenchmarkGrantWire measures one GRANT or REVOKE over the wire (TLS, pgx,
// memstore: no fsync) per operation, with the simple protocol (a Query
// message: the statement commits on its own) and the extended protocol
// (Parse/Bind/Execute/Sync: an implicit transaction that is checked at
// Execute and committed at Sync), and inside BEGIN ... COMMIT blocks of 100
// statements. Run it with a fixed count, e.g.
//
//	go test -run '^$' -bench BenchmarkGrantWire -benchtime 3000x -benchmem ./sqlfront/
//
// The server runs with mandate serve's default statement timeout (30 s),
// so that every statement pays for its bound as in production.
func BenchmarkGrantWire(b *testing.B) {
	f := startFrontend(b, func(_ *catalog.Options, c *sqlfront.Config) { c.StatementTimeout = 30 * time.Second })
	admin := f.admin(b)
	mustExec(b, admin, `CREATE GROUP bench`, `CREATE CONNECTION bench_c TYPE MCP OPTIONS (url 'https://bench.invalid/mcp')`)
	stmts := [2]string{`GRANT USE_CONNECTION ON CONNECTION bench_c TO bench`, `REVOKE USE_CONNECTION ON CONNECTION bench_c FROM bench`}
	for _, m := range []struct {
		name     string
		extended bool
		block    int
	}{
		{"simple", false, 0},
		{"extended", true, 0},
		{"block-100/simple", false, 100},
		{"block-100/extended", true, 100},
	} {
		b.Run(m.name, func(b *testing.B) {
			conn := f.admin(b)
			ctx := b.Context()
			lat := make([]time.Duration, 0, 4096)
			for i := 0; b.Loop(); i++ {
				if m.block > 0 && i%m.block == 0 {
					if i > 0 {
						mustExec(b, conn, "COMMIT")
					}
					mustExec(b, conn, "BEGIN")
				}
				t0 := time.Now()
				var err error
				if m.extended { // Parse, Bind, Describe, Execute, Sync
					err = conn.PgConn().ExecParams(ctx, stmts[i%2], nil, nil, nil, nil).Read().Err
				} else { // Query
					_, err = conn.PgConn().Exec(ctx, stmts[i%2]).ReadAll()
				}
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			if m.block > 0 {
				mustExec(b, conn, "COMMIT")
			}
			slices.Sort(lat)
			us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
			b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
			b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
		})
	}
}
