package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// RunEvents runs the conformance suite of catalog.EventStore. Each subtest
// gets a new, empty store from newStore and closes it when it ends (a
// second Close must return nil).
func RunEvents(t *testing.T, newStore func(t *testing.T) catalog.EventStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s catalog.EventStore)
	}{
		{"Empty", testEventsEmpty},
		{"Audit", testAudit},
		{"ManyEvents", testManyEvents},
		{"ZeroEvent", testZeroEvent},
		{"Completion", testCompletion},
		{"AIGatewayColumns", testAIGatewayColumns},
		{"ChangeAudit", testChangeAudit},
		{"Closed", testEventsClosed},
		{"ContextCanceled", testEventsContextCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.run(t, s)
		})
	}
}

// RunEventsDurability appends events (requests, completions, change
// audit) to a store opened on a fresh directory, closes it and checks
// after reopening that they are all there, twice over.
func RunEventsDurability(t *testing.T, open func(t *testing.T, dir string) catalog.EventStore) {
	dir := t.TempDir()
	ctx := t.Context()
	s := open(t, dir)
	r := auditEvent(1, base)
	r.Service, r.StatusCode = "mcp", 0
	c := r
	c.Completes, c.StatusCode, c.Decision, c.LatencyMs = true, 502, "deny", 9
	must(t, s.AppendAudit(ctx, r, auditEvent(2, base.Add(time.Second))))
	must(t, s.AppendAudit(ctx, c))
	ch := auditEvent(3, base.Add(2*time.Second))
	ch.Revision = 7
	must(t, s.AppendChangeAudit(ctx, 7, []catalog.AuditEvent{ch}))
	done := r
	done.CompleteWith(&c)
	want := []catalog.AuditEvent{done, auditEvent(2, base.Add(time.Second)), ch}
	closeStore(t, s)

	s = open(t, dir)
	checkAudit(t, s, want)
	checkAudited(t, s, 7)
	e4 := auditEvent(4, base.Add(3*time.Second))
	e4.Revision = 9
	must(t, s.AppendChangeAudit(ctx, 9, []catalog.AuditEvent{ch, e4}))
	want = append(want, e4)
	closeStore(t, s)

	s = open(t, dir)
	checkAudit(t, s, want)
	checkAudited(t, s, 9)
	closeStore(t, s)
}

// checkAudit compares all audit events with want (in order).
func checkAudit(t *testing.T, s catalog.AuditReader, want []catalog.AuditEvent) {
	t.Helper()
	got, err := s.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) == 0 {
		got = nil
	}
	equal(t, "ListAudit", got, normEvents(want))
}

func checkAudited(t *testing.T, s catalog.EventStore, want catalog.Revision) {
	t.Helper()
	got, err := s.AuditedRevision(t.Context())
	if err != nil || got != want {
		t.Errorf("AuditedRevision = %d, %v; want %d", got, err, want)
	}
}

func testEventsEmpty(t *testing.T, s catalog.EventStore) {
	checkAudit(t, s, nil)
	checkAudited(t, s, 0)
}

func testAudit(t *testing.T, s catalog.EventStore) {
	ctx := t.Context()
	e1 := auditEvent(1, base)
	e2 := auditEvent(2, base.Add(time.Hour))
	e3 := auditEvent(3, base.Add(-time.Hour).In(time.FixedZone("PST", -8*3600)))
	e4 := auditEvent(4, base.Add(30*time.Minute+999*time.Nanosecond))
	e4.Revision = 1
	must(t, s.AppendAudit(ctx, e1, e2))
	must(t, s.AppendAudit(ctx))
	must(t, s.AppendAudit(ctx, e3))
	must(t, s.AppendChangeAudit(ctx, 1, []catalog.AuditEvent{e4}))
	all := []catalog.AuditEvent{e3, e1, e4, e2}
	checkAudit(t, s, all)
	got, err := s.ListAudit(ctx, time.Time{}, 0)
	must(t, err)
	for _, e := range got {
		if e.Time.Location() != time.UTC {
			t.Errorf("event %s: time in %v, want UTC", e.EventID, e.Time.Location())
		}
	}

	tests := []struct {
		name  string
		since time.Time
		limit int
		want  []catalog.AuditEvent
	}{
		{"all", time.Time{}, 0, all},
		{"negative limit", time.Time{}, -1, all},
		{"limit", time.Time{}, 2, all[:2]},
		{"limit above count", time.Time{}, 10, all},
		{"since is inclusive", norm(e1.Time), 0, all[1:]},
		{"since just after", norm(e1.Time).Add(time.Microsecond), 0, all[2:]},
		{"since in another zone", norm(e4.Time).In(time.FixedZone("X", 5*3600+1800)), 0, all[2:]},
		{"since and limit", norm(e1.Time), 1, all[1:2]},
		{"since after all", base.Add(2 * time.Hour), 0, nil},
		{"since before all", base.Add(-2 * time.Hour), 0, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(t.Context(), tt.since, tt.limit)
			must(t, err)
			if len(got) == 0 {
				got = nil
			}
			equal(t, "ListAudit", got, normEvents(tt.want))
		})
	}

	// Events with the same time are listed in the order appended.
	e5, e6 := auditEvent(5, base.Add(3*time.Hour)), auditEvent(6, base.Add(3*time.Hour))
	must(t, s.AppendAudit(ctx, e5, e6))
	got, err = s.ListAudit(ctx, norm(e5.Time), 0)
	must(t, err)
	equal(t, "events with the same time", got, normEvents([]catalog.AuditEvent{e5, e6}))
}

func testManyEvents(t *testing.T, s catalog.EventStore) {
	var want []catalog.AuditEvent
	for i := range 4500 {
		want = append(want, auditEvent(i, base.Add(time.Duration(i)*time.Millisecond)))
	}
	must(t, s.AppendAudit(t.Context(), want[:3000]...))
	for _, e := range want[3000:3100] {
		must(t, s.AppendAudit(t.Context(), e))
	}
	must(t, s.AppendAudit(t.Context(), want[3100:]...))
	checkAudit(t, s, want)
}

func testZeroEvent(t *testing.T, s catalog.EventStore) {
	// The zero event round-trips, zero time included.
	must(t, s.AppendAudit(t.Context(), catalog.AuditEvent{}))
	checkAudit(t, s, []catalog.AuditEvent{{}})
}

// testCompletion: a completion replaces the outcome columns of the row
// with its EventID, whether that row was appended earlier or in the same
// call; the other columns, the time and the order stay; a completion of an
// unknown event is dropped; repeating one changes nothing.
func testCompletion(t *testing.T, s catalog.EventStore) {
	ctx := t.Context()
	request := func(i int, at time.Time) catalog.AuditEvent {
		e := auditEvent(i, at)
		e.Service, e.Action, e.StatusCode, e.ErrorMessage, e.Decision, e.Reason, e.LatencyMs = "mcp", "tools/call", 0, "", "allow", "granted", 0
		e.RequestParams, e.SessionID, e.Revision = `{"phase":"request"}`, "", 0
		return e
	}
	completion := func(r catalog.AuditEvent, status int) catalog.AuditEvent {
		c := r
		c.Completes = true
		c.UserIdentity, c.Action = "someone-else", "ignored" // not outcome columns
		c.SessionID, c.RequestParams, c.StatusCode, c.ErrorMessage = "sess-"+r.EventID[len(r.EventID)-2:], `{"bytes_out":12}`, status, "upstream said no"
		c.SQLState, c.Decision, c.Reason, c.LatencyMs = "", "deny", "guard denied the result", 1.5
		return c
	}
	completed := func(r, c catalog.AuditEvent) catalog.AuditEvent {
		r.CompleteWith(&c)
		return r
	}
	r1, r2, r3, r4 := request(11, base), request(12, base.Add(time.Second)), request(13, base.Add(2*time.Second)), request(14, base.Add(3*time.Second))
	must(t, s.AppendAudit(ctx, r1, r2))
	c1, c3, c4 := completion(r1, 200), completion(r3, 502), completion(r4, 404)
	must(t, s.AppendAudit(ctx, c1, r3))     // r1 in an earlier call
	must(t, s.AppendAudit(ctx, c3, r4, c4)) // r3 in the call before; r4 in the same call
	unknown := completion(request(99, base), 200)
	must(t, s.AppendAudit(ctx, unknown))
	want := []catalog.AuditEvent{completed(r1, c1), r2, completed(r3, c3), completed(r4, c4)}
	checkAudit(t, s, want)
	must(t, s.AppendAudit(ctx, c1))
	checkAudit(t, s, want)
}

// testAIGatewayColumns: an LLM call's request (trace ids), its completion
// (usage, guardrail outcomes; its trace ids replace the request's) and a
// captured payload event are stored with every column.
func testAIGatewayColumns(t *testing.T, s catalog.EventStore) {
	ctx := t.Context()
	req := auditEvent(21, base)
	req.Service, req.Action, req.Revision = catalog.AuditServiceLLM, "chat.completions", 0
	req.TraceID, req.SpanID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	done := req
	done.Completes, done.StatusCode, done.LatencyMs = true, 200, 812.5
	done.SpanID = "00f067aa0ba902b8"
	done.Guardrails = `[{"policy":"pii","phase":"result","action":"mask","entities":{"EMAIL":2}}]`
	done.Usage = &catalog.LLMUsage{ProviderService: "system.ai.openai_prod", Provider: "openai", Model: "gpt-4.1",
		InputTokens: 10, OutputTokens: 20, CachedInputTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, CostNanos: 123456789,
		TTFTMs: 12.5, Streaming: true, RequestTags: `{"project":"checkout"}`, Routing: `[{"destination":"openai_prod/gpt-4.1","status":200}]`}
	payload := auditEvent(22, base.Add(time.Millisecond))
	payload.Service, payload.Action, payload.Revision = catalog.AuditServiceLLM, catalog.AuditActionPayload, 0
	payload.RequestID = req.RequestID
	payload.Payload = &catalog.AuditPayload{RequestBody: `{"messages":[{"role":"user","content":"hi"}]}`, ResponseBody: `{"choices":[]}`}
	must(t, s.AppendAudit(ctx, req))
	must(t, s.AppendAudit(ctx, done, payload))
	want := req
	want.CompleteWith(&done)
	if want.Usage == nil || want.SpanID != done.SpanID {
		t.Fatalf("CompleteWith did not carry the usage and trace: %+v", want)
	}
	checkAudit(t, s, []catalog.AuditEvent{want, payload})
}

func testChangeAudit(t *testing.T, s catalog.EventStore) {
	ctx := t.Context()
	ev := func(i int, rev catalog.Revision) catalog.AuditEvent {
		e := auditEvent(i, base.Add(time.Duration(i)*time.Second))
		e.Revision = rev
		return e
	}
	gateway := auditEvent(100, base.Add(5*time.Second))
	gateway.Revision = 0
	must(t, s.AppendChangeAudit(ctx, 2, []catalog.AuditEvent{ev(1, 1), ev(2, 2), ev(3, 2)}))
	checkAudited(t, s, 2)
	must(t, s.AppendAudit(ctx, gateway))
	// Forwarded again (a crash before the mark reached the forwarder):
	// stored once; overlapping: only the new revisions.
	must(t, s.AppendChangeAudit(ctx, 2, []catalog.AuditEvent{ev(1, 1), ev(2, 2), ev(3, 2)}))
	must(t, s.AppendChangeAudit(ctx, 4, []catalog.AuditEvent{ev(2, 2), ev(3, 2), ev(6, 3), ev(7, 4)}))
	checkAudited(t, s, 4)
	// A mark with no events (changes without audit records), never lowered.
	must(t, s.AppendChangeAudit(ctx, 6, nil))
	must(t, s.AppendChangeAudit(ctx, 5, []catalog.AuditEvent{ev(8, 5)}))
	checkAudited(t, s, 6)
	checkAudit(t, s, []catalog.AuditEvent{ev(1, 1), ev(2, 2), ev(3, 2), gateway, ev(6, 3), ev(7, 4)})
}

func testEventsClosed(t *testing.T, s catalog.EventStore) {
	ctx := t.Context()
	must(t, s.AppendAudit(ctx, auditEvent(1, base)))
	must(t, s.Close())
	_, err := s.ListAudit(ctx, time.Time{}, 0)
	wantCode(t, "ListAudit", err, catalog.CodeUnavailable)
	wantCode(t, "AppendAudit", s.AppendAudit(ctx, auditEvent(2, base)), catalog.CodeUnavailable)
	_, err = s.AuditedRevision(ctx)
	wantCode(t, "AuditedRevision", err, catalog.CodeUnavailable)
	wantCode(t, "AppendChangeAudit", s.AppendChangeAudit(ctx, 1, nil), catalog.CodeUnavailable)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testEventsContextCanceled(t *testing.T, s catalog.EventStore) {
	must(t, s.AppendAudit(t.Context(), auditEvent(1, base)))
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name   string
		ctx    context.Context
		target error
	}{{"canceled", canceled, context.Canceled}, {"deadline", expired, context.DeadlineExceeded}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			_, err := s.ListAudit(ctx, time.Time{}, 0)
			wantCtxErr(t, "ListAudit", err, c.target)
			wantCtxErr(t, "AppendAudit", s.AppendAudit(ctx, auditEvent(2, base)), c.target)
			_, err = s.AuditedRevision(ctx)
			wantCtxErr(t, "AuditedRevision", err, c.target)
			e := auditEvent(3, base)
			e.Revision = 1
			wantCtxErr(t, "AppendChangeAudit", s.AppendChangeAudit(ctx, 1, []catalog.AuditEvent{e}), c.target)
			checkAudit(t, s, []catalog.AuditEvent{auditEvent(1, base)})
			checkAudited(t, s, 0)
		})
	}
}
