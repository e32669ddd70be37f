package pgstore_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/storetest"
)

func openEvents(t *testing.T, url string, o pgstore.EventOptions) *pgstore.Events {
	t.Helper()
	e, err := pgstore.OpenEvents(t.Context(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testEvents runs the event stream's conformance suite, alone and behind
// the local write-ahead log (the production configuration), and the
// PostgreSQL-specific cases.
func testEvents(t *testing.T, server *pgtest.Server, newDatabase func(t *testing.T) string) {
	// The conformance suites want an empty store per subtest: copies of
	// one migrated database are cheaper than migrating each.
	template := newDatabase(t)
	openEvents(t, template, pgstore.EventOptions{}).Close()
	var copies atomic.Int64
	conn := server.Connect(t, "postgres")
	newDatabase = func(t *testing.T) string {
		t.Helper()
		name := fmt.Sprintf("events_%d", copies.Add(1))
		if _, err := conn.Exec(t.Context(), "CREATE DATABASE "+name+" TEMPLATE "+dbName(template)); err != nil {
			t.Fatal(err)
		}
		return server.URL(name)
	}
	t.Run("Conformance", func(t *testing.T) {
		storetest.RunEvents(t, func(t *testing.T) catalog.EventStore {
			return openEvents(t, newDatabase(t), pgstore.EventOptions{})
		})
	})
	// One database per directory: reopening finds what was written.
	var mu sync.Mutex
	urls := map[string]string{}
	dbFor := func(t *testing.T, dir string) string {
		mu.Lock()
		defer mu.Unlock()
		if urls[dir] == "" {
			urls[dir] = newDatabase(t)
		}
		return urls[dir]
	}
	t.Run("Durability", func(t *testing.T) {
		storetest.RunEventsDurability(t, func(t *testing.T, dir string) catalog.EventStore {
			return openEvents(t, dbFor(t, dir), pgstore.EventOptions{})
		})
	})
	withLog := func(t *testing.T, dir string) catalog.EventStore {
		t.Helper()
		l, err := auditwal.Open(t.Context(), dir, openEvents(t, dbFor(t, dir), pgstore.EventOptions{SpoolID: dir}), auditwal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Run("ConformanceWithLog", func(t *testing.T) {
		storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { return withLog(t, t.TempDir()) })
	})
	t.Run("DurabilityWithLog", func(t *testing.T) { storetest.RunEventsDurability(t, withLog) })
	t.Run("ReplicasForwardChangeAudit", func(t *testing.T) { testReplicasForwardChangeAudit(t, newDatabase(t)) })
	t.Run("Partitions", func(t *testing.T) { testPartitions(t, newDatabase(t)) })
	t.Run("Views", func(t *testing.T) { testViews(t, newDatabase(t)) })
	t.Run("MaxSize", func(t *testing.T) { testMaxSize(t, newDatabase(t)) })
	t.Run("ViewsConformance", func(t *testing.T) {
		storetest.RunViews(t, func(t *testing.T) (catalog.EventStore, catalog.QueryEngine) {
			url := newDatabase(t)
			e := openEvents(t, url, pgstore.EventOptions{})
			t.Cleanup(func() { e.Close() })
			q, err := pgquery.Open(t.Context(), url, pgquery.Options{Keys: keystore.Dir(t.TempDir())})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			return e, q
		})
	})
}

// EnforceMaxSize drops the oldest day partitions (with the default
// partition's older events) until the size is at most 90% of the bound;
// today's is kept; replicas doing it at once drop each partition once.
func testMaxSize(t *testing.T, url string) {
	ctx := t.Context()
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	// The stores' clock is the test's: "today" is one day for both, also
	// when the test runs across midnight.
	clock := func() time.Time { return now }
	var logged bytes.Buffer // e's log, written by the calls below only
	e := openEvents(t, url, pgstore.EventOptions{Now: clock, Logger: zerolog.New(&logged)})
	defer e.Close()
	other := openEvents(t, url, pgstore.EventOptions{Now: clock})
	defer other.Close()
	must(t, e.EnsurePartitions(ctx))
	if _, err := e.Pool().Exec(ctx, `SELECT mandate_audit_ensure_partitions($1::date, 10)`, today.AddDate(0, 0, -9).Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	// 10 days (9 days ago through today), 200 events of ~2 KB each.
	var evs []catalog.AuditEvent
	for d := range 10 {
		for i := range 200 {
			ev := event(d*1000+i, today.AddDate(0, 0, d-9).Add(time.Duration(i)*time.Second))
			ev.RequestParams = fmt.Sprintf(`{"statement":%q}`, strings.Repeat(fmt.Sprint(d*i), 2000)[:2000])
			evs = append(evs, ev)
		}
	}
	// An old event in the default partition.
	evs = append(evs, event(99999, today.AddDate(-5, 0, 0)))
	must(t, e.AppendAudit(ctx, evs...))
	size := func() int64 {
		var n int64
		must(t, e.Pool().QueryRow(ctx, `SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'audit_events'::regclass`).Scan(&n))
		return n
	}
	before := size()
	if n, err := e.EnforceMaxSize(ctx, before+1); err != nil || n != 0 {
		t.Fatalf("under the bound: dropped %d, %v", n, err)
	}
	bound := before * 6 / 10
	var wg sync.WaitGroup
	var dropped atomic.Int64
	for _, s := range []*pgstore.Events{e, other} {
		wg.Go(func() {
			n, err := s.EnforceMaxSize(ctx, bound)
			if err != nil {
				t.Error(err)
			}
			dropped.Add(int64(n))
		})
	}
	wg.Wait()
	// A second pass finds the size within the bound, whichever replica
	// took the lock first.
	n, err := other.EnforceMaxSize(ctx, bound)
	must(t, err)
	dropped.Add(int64(n))
	after := size()
	if after > bound/10*9 || dropped.Load() == 0 {
		t.Fatalf("size %d -> %d with bound %d: dropped %d partitions", before, after, bound, dropped.Load())
	}
	// The oldest days went, the newest stayed, each day whole.
	kept := count(t, e, `SELECT count(*) FROM audit_events`)
	oldest := count(t, e, `SELECT count(DISTINCT event_date) FROM audit_events`)
	if kept != oldest*200 || count(t, e, `SELECT count(*) FROM audit_events WHERE event_time >= $1`, today) != 200 ||
		count(t, e, `SELECT count(*) FROM audit_events WHERE event_time < $1`, today.AddDate(0, 0, 10-oldest-9)) != 0 {
		t.Fatalf("kept %d events of %d days", kept, oldest)
	}
	if count(t, e, `SELECT count(*) FROM audit_request_days WHERE day < $1`, today.AddDate(0, 0, 10-oldest-9)) != 0 {
		t.Fatal("request days of dropped partitions are left")
	}
	// Today's partition is never dropped; that is logged once an hour, not
	// at every check.
	for range 3 {
		if n, err := e.EnforceMaxSize(ctx, 1); err != nil || count(t, e, `SELECT count(*) FROM audit_events WHERE event_time >= $1`, today) != 200 {
			t.Fatalf("a bound below today's events: dropped %d, %v", n, err)
		}
	}
	if n := strings.Count(logged.String(), "alone exceed the size bound"); n != 1 {
		t.Fatalf("%d warnings for 3 checks within an hour, want 1:\n%s", n, logged.String())
	}
}

func event(i int, at time.Time) catalog.AuditEvent {
	return catalog.AuditEvent{EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Time: at, Service: "sql",
		Action: "GRANT", UserIdentity: "alice", RequestID: fmt.Sprintf("req-%d", i), RequestParams: `{"statement":"GRANT"}`,
		Decision: "allow"}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func count(t *testing.T, e *pgstore.Events, query string, args ...any) int {
	t.Helper()
	var n int
	must(t, e.Pool().QueryRow(t.Context(), query, args...).Scan(&n))
	return n
}

// Replicas forward the audit of the same catalog changes, directly and
// through their local spools, at once: each change's audit is stored once,
// and the gateway events of every replica all are.
func testReplicasForwardChangeAudit(t *testing.T, url string) {
	ctx := t.Context()
	now := time.Now().UTC()
	const replicas, revisions = 3, 20
	change := func(rev int) catalog.AuditEvent {
		e := event(rev, now.Add(time.Duration(rev)*time.Millisecond))
		e.Revision = catalog.Revision(rev)
		return e
	}
	// All open before any writes: each spool starts from mark 0 and logs
	// every change's audit, which only the store can then deduplicate.
	stores := make([]catalog.EventStore, replicas)
	for r := range replicas {
		inner := openEvents(t, url, pgstore.EventOptions{SpoolID: fmt.Sprintf("replica-%d", r)})
		stores[r] = inner
		if r > 0 { // replicas 1 and 2 behind their own spool, as in production
			l, err := auditwal.Open(ctx, t.TempDir(), inner, auditwal.Options{ApplyDelay: -1})
			must(t, err)
			stores[r] = l
		}
		defer stores[r].Close()
	}
	var wg sync.WaitGroup
	for r, s := range stores {
		wg.Go(func() {
			for rev := 1; rev <= revisions; rev++ {
				gw := event(1000*(r+1)+rev, now)
				gw.Service, gw.Revision = "mcp", catalog.Revision(rev) // gateway events carry the decision's revision
				if err := s.AppendAudit(ctx, gw); err != nil {
					t.Error(err)
					return
				}
				if err := s.AppendChangeAudit(ctx, catalog.Revision(rev), []catalog.AuditEvent{change(rev)}); err != nil {
					t.Error(err)
					return
				}
			}
			if l, ok := s.(*auditwal.Log); ok {
				if err := l.Flush(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	e := openEvents(t, url, pgstore.EventOptions{})
	defer e.Close()
	if n := count(t, e, `SELECT count(*) FROM audit_events WHERE service_name = 'sql'`); n != revisions {
		t.Errorf("%d change audit rows, want %d (one per revision)", n, revisions)
	}
	if n := count(t, e, `SELECT count(DISTINCT event_id) FROM audit_events WHERE service_name = 'sql'`); n != revisions {
		t.Errorf("%d distinct change audit events, want %d", n, revisions)
	}
	if n := count(t, e, `SELECT count(*) FROM audit_events WHERE service_name = 'mcp'`); n != replicas*revisions {
		t.Errorf("%d gateway rows, want %d", n, replicas*revisions)
	}
	if rev, err := e.AuditedRevision(ctx); err != nil || rev != revisions {
		t.Errorf("AuditedRevision = %d, %v; want %d", rev, err, revisions)
	}
	if n := count(t, e, `SELECT count(*) FROM mandate_audit_spools WHERE spool_id IN ('replica-1', 'replica-2') AND log_seq > 0`); n != 2 {
		t.Errorf("%d spools recorded, want 2", n)
	}
}

// Events land in their day's partition, created ahead or on demand; an
// event far from today lands in the default partition; no append fails
// for a missing partition. Retention drops whole expired days.
func testPartitions(t *testing.T, url string) {
	ctx := t.Context()
	now := time.Now().UTC()
	e := openEvents(t, url, pgstore.EventOptions{Retention: 30 * 24 * time.Hour})
	defer e.Close()
	today := now.Truncate(24 * time.Hour)
	old := today.AddDate(0, 0, -10).Add(time.Hour) // within retention, no partition yet
	ahead := today.AddDate(0, 0, 2).Add(time.Hour) // created at open
	far := today.AddDate(1, 0, 0)                  // beyond the days partitioned: default
	ancient := time.Date(1999, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, e.AppendAudit(ctx, event(1, now), event(2, old), event(3, ahead), event(4, far), event(5, ancient)))
	where := func(id int) string {
		var rel string
		must(t, e.Pool().QueryRow(ctx, `SELECT tableoid::regclass::text FROM audit_events WHERE event_id = $1`,
			fmt.Sprintf("00000000-0000-4000-8000-%012d", id)).Scan(&rel))
		return rel
	}
	for id, want := range map[int]string{1: "audit_events_p" + now.Format("20060102"), 2: "audit_events_p" + old.Format("20060102"),
		3: "audit_events_p" + ahead.Format("20060102"), 4: "audit_events_default", 5: "audit_events_default"} {
		if got := where(id); got != want {
			t.Errorf("event %d in %s, want %s", id, got, want)
		}
	}
	// Another replica whose clock says a later day creates that day's
	// partition itself; its events for a day whose events already sit in
	// the default partition stay there and are appended all the same.
	e2 := openEvents(t, url, pgstore.EventOptions{Now: func() time.Time { return far }})
	defer e2.Close()
	must(t, e2.AppendAudit(ctx, event(6, far.Add(time.Minute)), event(7, far.AddDate(0, 0, 1))))
	if got := where(6); got != "audit_events_default" {
		t.Errorf("event 6 in %s, want the default partition (its day has rows there)", got)
	}
	if got, want := where(7), "audit_events_p"+far.AddDate(0, 0, 1).Format("20060102"); got != want {
		t.Errorf("event 7 in %s, want %s", got, want)
	}
	// Retention: the day of event 2 and older go, today stays.
	dropped, err := e.DropExpired(ctx, today.AddDate(0, 0, -5))
	must(t, err)
	if dropped < 1 {
		t.Errorf("DropExpired dropped %d partitions, want the one of %s", dropped, old.Format(time.DateOnly))
	}
	got, err := e.ListAudit(ctx, time.Time{}, 0)
	must(t, err)
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.EventID[len(ev.EventID)-1:])
	}
	if fmt.Sprint(ids) != "[1 3 4 6 7]" {
		t.Errorf("after retention: events %v, want [1 3 4 6 7]", ids)
	}
	if n := count(t, e, `SELECT count(*) FROM pg_class WHERE relname = $1`, "audit_events_p"+old.Format("20060102")); n != 0 {
		t.Errorf("the partition of %s is still there", old.Format(time.DateOnly))
	}
}

// The views have the columns and types of the system tables; text that
// is not JSON shows as NULL in the JSON columns (never an error), and
// bytes PostgreSQL's text refuses do not fail the append.
func testViews(t *testing.T, url string) {
	ctx := t.Context()
	e := openEvents(t, url, pgstore.EventOptions{})
	defer e.Close()
	for _, tc := range []struct {
		view string
		cols []catalog.QueryColumn
	}{{catalog.AuditRelation, catalog.AuditColumns}, {catalog.UsageRelation, catalog.UsageColumns}, {catalog.PayloadsRelation, catalog.PayloadColumns}} {
		rows, err := e.Pool().Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = 'mandate_views' AND table_name = $1 ORDER BY ordinal_position`, tc.view)
		must(t, err)
		var got, want []string
		for rows.Next() {
			var n, ty string
			must(t, rows.Scan(&n, &ty))
			got = append(got, n+" "+ty)
		}
		must(t, rows.Err())
		for _, c := range tc.cols {
			want = append(want, c.Name+" "+c.Type.Data.String())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("mandate_views.%s:\n got %v\nwant %v", tc.view, got, want)
		}
	}
	now := time.Now().UTC()
	ok := event(1, now)
	bad := event(2, now)
	bad.RequestParams = "not json"
	bad.Guardrails = strings.Repeat("[", 600) + strings.Repeat("]", 600)
	bad.UserAgent = "nul\x00 and \xff bytes"
	llm := event(3, now)
	llm.Service, llm.Action = catalog.AuditServiceLLM, "chat.completions"
	llm.Usage = &catalog.LLMUsage{Model: "m", InputTokens: 1, OutputTokens: 2, CostNanos: 1500000000, RequestTags: `{"a":`, Routing: `[{"x":"\ud800"}]`}
	must(t, e.AppendAudit(ctx, ok, bad, llm))
	var params, guard *string
	must(t, e.Pool().QueryRow(ctx, `SELECT request_params::text, guardrails::text FROM mandate_views.system_access_audit WHERE event_id = $1`, ok.EventID).Scan(&params, &guard))
	if params == nil || *params != ok.RequestParams || guard != nil {
		t.Errorf("valid JSON: request_params %v guardrails %v", params, guard)
	}
	var ua string
	must(t, e.Pool().QueryRow(ctx, `SELECT request_params::text, guardrails::text, user_agent FROM mandate_views.system_access_audit WHERE event_id = $1`, bad.EventID).Scan(&params, &guard, &ua))
	if params != nil || guard != nil || ua != "nul\uFFFD and \uFFFD bytes" {
		t.Errorf("invalid JSON: request_params %v guardrails %v user_agent %q", params, guard, ua)
	}
	var tags, routing *string
	var cost, total string
	must(t, e.Pool().QueryRow(ctx, `SELECT request_tags::text, routing::text, cost_usd::text, total_tokens::text FROM mandate_views.system_ai_gateway_usage`).Scan(&tags, &routing, &cost, &total))
	if tags != nil || routing != nil || cost != "1.500000000" || total != "3" {
		t.Errorf("usage: request_tags %v routing %v cost_usd %s total_tokens %s", tags, routing, cost, total)
	}
	// Every view reads without error over all rows.
	for _, v := range []string{catalog.AuditRelation, catalog.UsageRelation, catalog.PayloadsRelation} {
		rows, err := e.Pool().Query(ctx, `SELECT * FROM mandate_views.`+v)
		must(t, err)
		for rows.Next() {
		}
		must(t, rows.Err())
	}
}
