package duckstore

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

func engineT(t *testing.T) (*Store, *QueryEngine) {
	t.Helper()
	s := openT(t, t.TempDir())
	e, err := s.QueryEngine(QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return s, e
}

func queryAll(t *testing.T, e *QueryEngine, q catalog.Query) [][]any {
	t.Helper()
	var out [][]any
	if err := e.Query(t.Context(), q, func(v []any) error { out = append(out, v); return nil }); err != nil {
		t.Fatalf("%s: %v", q.SQL, err)
	}
	return out
}

func auditEvent(id string, at time.Time) catalog.AuditEvent {
	return catalog.AuditEvent{EventID: id, Time: at, Service: "sql", Action: "GRANT", UserIdentity: "admin",
		RunBy: "alice@example.com", RunAs: "coding-agent", RequestID: "req-" + id, SecurableType: "CONNECTION",
		SecurableName: "system.ai.gh", RequestParams: `{"statement": "GRANT ...", "n": 2}`, StatusCode: 1,
		ErrorMessage: "denied", SQLState: "42501", Decision: "deny", Reason: "no", LatencyMs: 1.5}
}

// The audit view has exactly the columns of catalog.AuditColumns.
func TestAuditRelationColumns(t *testing.T) {
	_, e := engineT(t)
	cols, _, err := e.Describe(t.Context(), catalog.Query{SQL: "SELECT * FROM " + catalog.AuditRelation})
	if err != nil {
		t.Fatal(err)
	}
	if len(cols) != len(catalog.AuditColumns) {
		t.Fatalf("%d columns, want %d: %+v", len(cols), len(catalog.AuditColumns), cols)
	}
	for i, c := range cols {
		w := catalog.AuditColumns[i]
		if c.Name != w.Name || c.Type.Data != w.Type.Data {
			t.Errorf("column %d: %s %v, want %s %v", i, c.Name, c.Type.Data, w.Name, w.Type.Data)
		}
	}
}

func TestQueryAudit(t *testing.T) {
	s, e := engineT(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.AppendAudit(t.Context(), auditEvent("a", now), auditEvent("b", now.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	ev := auditEvent("c", now.Add(2*time.Second))
	ev.RequestParams = "" // not JSON: NULL
	if err := s.AppendAudit(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	rows := queryAll(t, e, catalog.Query{SQL: `SELECT event_id, event_date, identity_metadata, request_params, response,
		identity_metadata->>'run_as' FROM ` + catalog.AuditRelation + ` ORDER BY event_time`})
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	if r[0] != "a" || !r[1].(time.Time).Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("row = %#v", r)
	}
	if r[2] != `{"run_by":"alice@example.com","run_as":"coding-agent"}` {
		t.Errorf("identity_metadata = %#v", r[2])
	}
	if r[3] != `{"statement": "GRANT ...", "n": 2}` {
		t.Errorf("request_params = %#v", r[3])
	}
	if r[4] != `{"status_code":1,"error_message":"denied","sql_state":"42501"}` {
		t.Errorf("response = %#v", r[4])
	}
	if r[5] != "coding-agent" {
		t.Errorf("run_as = %#v", r[5])
	}
	if rows[2][3] != nil {
		t.Errorf("empty request_params = %#v, want NULL", rows[2][3])
	}
	// Parameters, and the request_id index.
	rows = queryAll(t, e, catalog.Query{SQL: "SELECT event_id FROM " + catalog.AuditRelation + " WHERE request_id = $1", Args: []any{"req-b"}})
	if len(rows) != 1 || rows[0][0] != "b" {
		t.Errorf("lookup = %v", rows)
	}
}

func TestQueryTypes(t *testing.T) {
	_, e := engineT(t)
	q := catalog.Query{SQL: `SELECT true, 1::int2, 2::int4, 3::int8, 1.5::float4, 2.5::float8, 1.25::numeric(10,2),
		'ab'::blob, DATE '2020-01-02', TIMESTAMPTZ '2020-01-02 03:04:05.123456+00', TIMESTAMP '2020-01-02 03:04:05',
		'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid, INTERVAL '1 month 2 days 3 seconds', '{"b": 1, "a": [1, 2]}'::json,
		[1, 2, NULL], ['x', 'y'], {'a': 1}, NULL, 170141183460469231731687303715884105727::hugeint, TIME '01:02:03'`}
	cols, _, err := e.Describe(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.DataType{catalog.DataBool, catalog.DataInt16, catalog.DataInt32, catalog.DataInt64, catalog.DataFloat32,
		catalog.DataFloat64, catalog.DataNumeric, catalog.DataBytes, catalog.DataDate, catalog.DataTimestamptz,
		catalog.DataTimestamp, catalog.DataUUID, catalog.DataInterval, catalog.DataJSON, catalog.DataList, catalog.DataList,
		catalog.DataText, catalog.DataInt32, catalog.DataNumeric, catalog.DataTime} // NULL is INTEGER in DuckDB
	for i, c := range cols {
		if i >= len(want) || c.Type.Data != want[i] {
			t.Errorf("column %d (%s): %v", i, c.Type.Engine, c.Type.Data)
		}
	}
	rows := queryAll(t, e, q)
	r := rows[0]
	uuid := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	checks := []any{true, int16(1), int32(2), int64(3), float32(1.5), 2.5, "1.25", []byte("ab"),
		time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 2, 3, 4, 5, 123456000, time.UTC),
		time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), uuid, catalog.Interval{Months: 1, Days: 2, Micros: 3_000_000},
		`{"b": 1, "a": [1, 2]}`, "[1 2 <nil>]", "[x y]", "{'a': 1}", nil, "170141183460469231731687303715884105727",
		time.Hour + 2*time.Minute + 3*time.Second}
	for i, w := range checks {
		got := r[i]
		switch g := got.(type) {
		case catalog.Decimal:
			got = g.String()
		case time.Time:
			if !g.Equal(w.(time.Time)) {
				t.Errorf("column %d = %v, want %v", i, g, w)
			}
			continue
		case []any:
			got = fmt.Sprint(g)
		case []byte:
			got = string(g)
			w = string(w.([]byte))
		}
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("column %d = %#v, want %#v", i, got, w)
		}
	}
}

func TestQueryVirtualTables(t *testing.T) {
	_, e := engineT(t)
	calls := 0
	vt := &catalog.VirtualTable{
		Columns: []catalog.QueryColumn{{Name: "name", Type: catalog.ColumnType{Data: catalog.DataText}},
			{Name: "n", Type: catalog.ColumnType{Data: catalog.DataInt32}},
			{Name: "opts", Type: catalog.ColumnType{Data: catalog.DataJSON}},
			{Name: "at", Type: catalog.ColumnType{Data: catalog.DataTimestamptz}}},
		Rows: func(context.Context) ([][]any, error) {
			calls++
			return [][]any{{"a", int32(1), `{"x": 1}`, time.Unix(0, 0)}, {"b", int32(2), nil, nil}}, nil
		},
	}
	q := catalog.Query{SQL: fmt.Sprintf(`SELECT x.name, x.n + y.n, x.opts, x.at FROM %[1]s('t') x JOIN %[1]s('t') y ON x.name = y.name
		WHERE x.n > $1 ORDER BY 1`, catalog.VirtualTableFunc), Args: []any{int32(0)}, Tables: map[string]*catalog.VirtualTable{"t": vt}}
	rows := queryAll(t, e, q)
	// JSON of virtual tables reaches the engine through encoding/json: compacted.
	if len(rows) != 2 || rows[0][0] != "a" || rows[0][1] != int32(2) || rows[0][2] != `{"x":1}` || rows[1][2] != nil {
		t.Errorf("rows = %#v", rows)
	}
	if calls != 1 {
		t.Errorf("Rows called %d times in one query", calls)
	}
	// Unknown virtual table, and none outside a query that supplies it.
	err := e.Query(t.Context(), catalog.Query{SQL: "SELECT * FROM " + catalog.VirtualTableFunc + "('nope')"}, func([]any) error { return nil })
	var qe *catalog.QueryError
	if !errors.As(err, &qe) || !strings.Contains(qe.Msg, `"nope" does not exist`) {
		t.Errorf("err = %v", err)
	}
}

func TestQueryParamsDescribe(t *testing.T) {
	_, e := engineT(t)
	_, params, err := e.Describe(t.Context(), catalog.Query{SQL: "SELECT count(*) FROM " + catalog.AuditRelation +
		" WHERE event_time > $1 AND request_id = $2 AND latency_ms > $3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 3 || params[0].Data != catalog.DataTimestamptz || params[1].Data != catalog.DataText || params[2].Data != catalog.DataFloat64 {
		t.Errorf("params = %+v", params)
	}
	// A string argument is converted to the parameter's type.
	rows := queryAll(t, e, catalog.Query{SQL: "SELECT $1::timestamptz < now(), $2::int + 1", Args: []any{"2020-01-01 00:00:00+00", "41"}})
	if rows[0][0] != true || rows[0][1] != int32(42) {
		t.Errorf("rows = %#v", rows)
	}
}

// The engine refuses writes, files and settings on its own, even for SQL
// that the front end would never send.
func TestQueryEngineHardening(t *testing.T) {
	_, e := engineT(t)
	for _, q := range []string{
		"INSERT INTO audit_events (event_id) VALUES ('x')",
		"DELETE FROM audit_events",
		"CREATE TABLE x (a int)",
		"SELECT * FROM read_csv('/etc/passwd')",
		"SELECT * FROM read_text('/etc/passwd')",
		"ATTACH '/tmp/x.duckdb' AS x",
		"COPY audit_events TO '/tmp/x.csv'",
		"SET threads = 1",
		"SET enable_external_access = true",
		"INSTALL httpfs",
		"LOAD httpfs",
	} {
		err := e.Query(t.Context(), catalog.Query{SQL: q}, func([]any) error { return nil })
		if err == nil {
			t.Errorf("%s: no error", q)
			continue
		}
		t.Logf("%s: %v", q, err)
	}
}

func TestQueryCancel(t *testing.T) {
	_, e := engineT(t)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := e.Query(ctx, catalog.Query{SQL: "SELECT count(*) FROM range(1000000000000) a"}, func([]any) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	// The connection is usable again.
	rows := queryAll(t, e, catalog.Query{SQL: "SELECT 1"})
	if len(rows) != 1 {
		t.Errorf("rows = %v", rows)
	}
}

// TestQueryCancelAnyMoment cancels queries at every moment of their
// course (before, during and after BEGIN, the query and ROLLBACK) on an
// engine of one connection: the next query always runs. An interrupted
// BEGIN can have begun its transaction, and an interrupt can outlive its
// call; a connection left in its transaction failed every later query on
// it ("current transaction is aborted").
func TestQueryCancelAnyMoment(t *testing.T) {
	s := openT(t, t.TempDir())
	e, err := s.QueryEngine(QueryOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		ctx, cancel := context.WithCancel(t.Context())
		after := time.Duration(rng.IntN(400)) * time.Microsecond
		stop := time.AfterFunc(after, cancel)
		err := e.Query(ctx, catalog.Query{SQL: "SELECT count(*) FROM range(1000000000000) a"}, func([]any) error { return nil })
		stop.Stop()
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("query %d (cancelled after %v): %v", i, after, err)
		}
		if err := e.Query(t.Context(), catalog.Query{SQL: "SELECT 1"}, func([]any) error { return nil }); err != nil {
			t.Fatalf("the query after query %d (cancelled after %v): %v", i, after, err)
		}
	}
}

func TestPruneAudit(t *testing.T) {
	s, e := engineT(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var evs []catalog.AuditEvent
	for i := range 1000 {
		evs = append(evs, auditEvent(fmt.Sprint(i), now.Add(time.Duration(i-500)*time.Hour)))
	}
	if err := s.AppendAudit(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	// Writers go on while old events are deleted in small batches.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.AppendAudit(context.Background(), auditEvent(fmt.Sprint("w", i), now.Add(time.Hour))); err != nil {
				t.Errorf("append during prune: %v", err)
				return
			}
		}
	}()
	n, err := e.PruneAudit(t.Context(), now, 64)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n != 500 {
		t.Errorf("deleted %d, want 500", n)
	}
	rows := queryAll(t, e, catalog.Query{SQL: "SELECT count(*), min(event_time) FROM " + catalog.AuditRelation + " WHERE event_id NOT LIKE 'w%'"})
	if rows[0][0] != int64(500) || !rows[0][1].(time.Time).Equal(now) {
		t.Errorf("left = %v", rows[0])
	}
}

func TestDecimalString(t *testing.T) {
	for _, c := range []struct {
		v     int64
		scale int
		want  string
	}{{125, 2, "1.25"}, {-5, 3, "-0.005"}, {7, 0, "7"}, {12, -2, "1200"}} {
		if got := (catalog.Decimal{Unscaled: big.NewInt(c.v), Scale: c.scale}).String(); got != c.want {
			t.Errorf("%d e-%d = %s, want %s", c.v, c.scale, got, c.want)
		}
	}
}
