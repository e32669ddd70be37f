package pgwire

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// BenchmarkWireRoundTrip measures the wire server's per-message path
// (reading and framing, executor, output) with the fake session, one round
// trip per iteration: a simple "select 1", an extended-protocol echo of a
// 100-byte parameter, and one of a 1 MiB parameter (a message larger than
// the read buffer).
func BenchmarkWireRoundTrip(b *testing.B) {
	ts := startServer(b, func(c *Config) { c.MaxConnections = 1000 })
	for _, bc := range []struct {
		name string
		mode pgx.QueryExecMode
		sql  string
		args []any
	}{
		{"simple select 1", pgx.QueryExecModeSimpleProtocol, "select 1", nil},
		{"extended echo 100B", pgx.QueryExecModeCacheStatement, "echo $1", []any{strings.Repeat("x", 100)}},
		{"extended echo 1MiB", pgx.QueryExecModeCacheStatement, "echo $1", []any{strings.Repeat("x", 1<<20)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := pgx.Connect(b.Context(), ts.connString(testUser, testPassword, "sslmode=disable"))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close(context.Background())
			args := append([]any{bc.mode}, bc.args...)
			b.ResetTimer()
			for b.Loop() {
				rows, err := conn.Query(b.Context(), bc.sql, args...)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
