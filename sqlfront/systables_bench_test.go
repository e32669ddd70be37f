package sqlfront_test

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BenchmarkSystemQuery measures queries over the system tables over the
// wire (TLS, pgx, simple protocol: each statement is parsed, analysed,
// written for the engine and run) with 10,000 audit events: a constant
// SELECT (drivers' probes), the 7-day top-20 aggregate, a lookup by
// request_id and arithmetic over a series. Run it with a fixed count:
//
//	go test -run '^$' -bench BenchmarkSystemQuery -benchtime 2000x ./sqlfront/
func BenchmarkSystemQuery(b *testing.B) {
	f := startSysFrontend(b)
	f.seedAudit(b, 10000)
	conn := f.admin(b)
	for _, c := range []struct{ name, sql string }{
		{"select1", `SELECT 1`},
		{"aggregate", `SELECT user_identity, action_name, count(*) FROM system.access.audit
			WHERE event_time > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20`},
		{"lookup", `SELECT * FROM system.access.audit WHERE request_id = 'req-5000'`},
		{"arithmetic", `SELECT sum(x / 3), avg(x), count(*) FILTER (WHERE x % 7 = 0) FROM generate_series(1, 1000) g(x)`},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := conn.Query(b.Context(), c.sql, pgx.QueryExecModeSimpleProtocol)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				if rows.Err() != nil || n == 0 {
					b.Fatal(fmt.Sprint(rows.Err(), n))
				}
			}
		})
	}
}
