package walstore

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

func fullEvent(i int) catalog.AuditEvent {
	return catalog.AuditEvent{
		EventID: "3f1c2a9e-0000-4000-8000-00000000000" + string(rune('0'+i%10)), Time: time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC),
		Service: "mcp", Action: "tools/call", UserIdentity: "alice@example.com", RunBy: "alice@example.com", RunAs: "agent",
		SourceIP: "10.0.0.1", UserAgent: "ua/1 ✓", SessionID: "s", RequestID: "r", SecurableType: "CONNECTION",
		SecurableName: "system.ai.gh", RequestParams: `{"tool":"x","nul":"a\u0000b"}`, StatusCode: -32603,
		ErrorMessage: "upstream failed", SQLState: "", Decision: "deny", Reason: "policy", LatencyMs: 12.25,
		Revision: catalog.Revision(1 << 40),
	}
}

func TestAuditCodecRoundTrip(t *testing.T) {
	events := []catalog.AuditEvent{fullEvent(1), {}, fullEvent(2)}
	events[1].Time = time.Time{}.UTC()
	events[2].LatencyMs = math.Inf(-1)
	r := &record{Seq: 42, Ops: []op{{K: "audit", A: events}}}
	buf, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if buf[hdrSize] != auditMagic {
		t.Fatalf("an audit-only record is not binary: body starts with %q", buf[hdrSize])
	}
	got, err := decodeBody(buf[hdrSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Ops, r.Ops) || got.Meta != nil {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got.Ops, r.Ops)
	}
	// Anything else stays JSON.
	events[2].LatencyMs = 1
	m := catalog.Meta{Revision: 3}
	for _, r := range []*record{
		{Seq: 1, Ops: []op{{K: "audit", A: events}}, Meta: &m},
		{Seq: 1, Ops: []op{{K: "add_grant", G: &catalog.Grant{Securable: 1}}, {K: "audit", A: events}}},
	} {
		buf, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if buf[hdrSize] != '{' {
			t.Fatalf("record %+v not JSON", r)
		}
	}
}

// A record with completions takes the second form, flags included.
func TestAuditCodecCompletions(t *testing.T) {
	done := fullEvent(1)
	done.Completes = true
	events := []catalog.AuditEvent{fullEvent(1), done, fullEvent(2)}
	r := &record{Seq: 7, Ops: []op{{K: "audit", A: events}}}
	buf, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if buf[hdrSize] != auditMagic2 {
		t.Fatalf("a record with a completion starts with %#x", buf[hdrSize])
	}
	got, err := decodeBody(buf[hdrSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Ops, r.Ops) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got.Ops, r.Ops)
	}
	// An unknown flag bit is refused (a newer writer's meaning).
	body := append([]byte(nil), buf[hdrSize:]...)
	body[len(body)-1] |= 0x80
	if _, err := decodeBody(body); err == nil {
		t.Fatal("an unknown flag decoded")
	}
}

// A record with trace ids, guardrail outcomes, usage or a payload takes the
// third form; every field round-trips, and events without them in the
// same record stay without them.
func TestAuditCodecExtended(t *testing.T) {
	llm := fullEvent(3)
	llm.Service, llm.TraceID, llm.SpanID = "llm", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	llm.Guardrails = `[{"policy":"pii","action":"mask"}]`
	done := llm
	done.Completes = true
	done.Usage = &catalog.LLMUsage{ProviderService: "system.ai.openai_prod", Provider: "openai", Model: "gpt-4.1",
		InputTokens: 10, OutputTokens: 20, CachedInputTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, CostNanos: 123456789,
		TTFTMs: 12.5, Streaming: true, RequestTags: `{"project":"checkout"}`, Routing: `[{"status":200}]`}
	payload := fullEvent(4)
	payload.Payload = &catalog.AuditPayload{RequestBody: `{"messages":[]}`, ResponseBody: "{}"}
	events := []catalog.AuditEvent{fullEvent(1), llm, done, payload}
	r := &record{Seq: 9, Ops: []op{{K: "audit", A: events}}}
	buf, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if buf[hdrSize] != auditMagic3 {
		t.Fatalf("a record with usage starts with %#x", buf[hdrSize])
	}
	got, err := decodeBody(buf[hdrSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Ops, r.Ops) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got.Ops, r.Ops)
	}
	body := buf[hdrSize:]
	for n := 1; n < len(body); n++ {
		if _, err := decodeBody(body[:n]); err == nil {
			t.Fatalf("a body cut to %d of %d bytes decoded", n, len(body))
		}
	}
}

func TestAuditCodecMalformed(t *testing.T) {
	done := fullEvent(2)
	done.Completes = true
	for _, events := range [][]catalog.AuditEvent{{fullEvent(1), fullEvent(2)}, {fullEvent(1), done}} {
		r := &record{Seq: 1, Ops: []op{{K: "audit", A: events}}}
		buf, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		body := buf[hdrSize:]
		for n := 1; n < len(body); n++ {
			if _, err := decodeBody(body[:n]); err == nil {
				t.Fatalf("a body cut to %d of %d bytes decoded", n, len(body))
			}
		}
		if _, err := decodeBody(append(append([]byte(nil), body...), 0)); err == nil {
			t.Fatal("a body with a trailing byte decoded")
		}
	}
	huge := []byte{auditMagic, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := decodeBody(huge); err == nil {
		t.Fatal("a count larger than the body decoded")
	}
}

func FuzzAuditDecode(f *testing.F) {
	buf, _ := encode(&record{Seq: 1, Ops: []op{{K: "audit", A: []catalog.AuditEvent{fullEvent(1)}}}})
	f.Add(buf[hdrSize:])
	f.Add([]byte{auditMagic, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		if b[0] != auditMagic2 && b[0] != auditMagic3 {
			b[0] = auditMagic
		}
		events, err := decodeAudit(b)
		if err != nil {
			return
		}
		again := appendAudit(nil, events)
		if _, err := decodeAudit(again); err != nil {
			t.Fatalf("re-encoded events do not decode: %v", err)
		}
	})
}

// TestAuditRecordsReplay mixes binary audit records and JSON catalog
// records in one log, crashes, and replays.
func TestAuditRecordsReplay(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	s, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var want []catalog.AuditEvent
	for i := range 6 {
		e := fullEvent(i)
		e.Time = e.Time.Add(time.Duration(i) * time.Second)
		if i%2 == 0 {
			err = s.AppendAudit(ctx, e, e)
			want = append(want, e, e)
		} else {
			err = s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
				if err := tx.AddGrant(ctx, grant(i)); err != nil {
					return err
				}
				if err := tx.AppendAudit(ctx, e); err != nil {
					return err
				}
				return tx.SetMeta(ctx, catalog.Meta{Revision: catalog.Revision(i), NextID: 50})
			})
			want = append(want, e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	crash(t, s)
	// A torn binary record at the end: its header and half its body.
	path := filepath.Join(dir, FileName)
	torn, err := encode(&record{Seq: 99, Ops: []op{{K: "audit", A: []catalog.AuditEvent{fullEvent(9)}}}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn[:len(torn)/2]); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s2, err := Open(ctx, dir, inner, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit after replay:\n got %+v\nwant %+v", got, want)
	}
	if m, _ := s2.Meta(ctx); m.Revision != 5 {
		t.Fatalf("revision after replay = %d, want 5", m.Revision)
	}
}

// BenchmarkAppendAudit measures one durable AppendAudit of 64 events (a
// typical group-commit batch): encoding, write and fsync.
func BenchmarkAppendAudit(b *testing.B) {
	s, err := Open(b.Context(), b.TempDir(), memstore.New(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	events := make([]catalog.AuditEvent, 64)
	for i := range events {
		events[i] = fullEvent(i)
	}
	for b.Loop() {
		if err := s.AppendAudit(b.Context(), events...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEncodeAudit(b *testing.B) {
	events := make([]catalog.AuditEvent, 64)
	for i := range events {
		events[i] = fullEvent(i)
	}
	for _, bc := range []struct {
		name string
		r    *record
	}{
		{"binary", &record{Seq: 1, Ops: []op{{K: "audit", A: events}}}},
		{"json", &record{Seq: 1, Ops: []op{{K: "audit", A: events}}, Meta: &catalog.Meta{}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := encode(bc.r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
		})
	}
}

// stallingStore fails applies while stalled is set, as a store that cannot
// keep up would.
type stallingStore struct {
	keepOpen
	stalled atomic.Bool
}

func (s *stallingStore) ReadWriteTx(ctx context.Context, fn func(context.Context, catalog.RWTx) error) error {
	if s.stalled.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "busy")
	}
	return s.keepOpen.ReadWriteTx(ctx, fn)
}

// TestMaxPendingBytes: writers wait while too much waits to be applied.
func TestMaxPendingBytes(t *testing.T) {
	ctx := t.Context()
	inner := &stallingStore{keepOpen: keepOpen{memstore.New()}}
	inner.stalled.Store(true)
	s, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: 5 * time.Millisecond, MaxPendingBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events := []catalog.AuditEvent{fullEvent(1), fullEvent(2), fullEvent(3), fullEvent(4), fullEvent(5), fullEvent(6), fullEvent(7), fullEvent(8)}
	n := 0
	for {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := s.AppendAudit(short, events...)
		cancel()
		if err != nil {
			if !catalog.IsCode(err, catalog.CodeUnavailable) || n == 0 {
				t.Fatalf("AppendAudit %d: %v, want unavailable once over the limit", n, err)
			}
			break
		}
		if n++; n > 100 {
			t.Fatal("the log took 100 records over its limit without waiting")
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.AppendAudit(ctx, events...) }()
	select {
	case err := <-done:
		t.Fatalf("AppendAudit returned %v while the store was stalled", err)
	case <-time.After(30 * time.Millisecond):
	}
	inner.stalled.Store(false) // the applier catches up, the writer goes on
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if es, err := s.ListAudit(ctx, time.Time{}, 0); err != nil || len(es) != (n+1)*len(events) {
		t.Fatalf("%d events, %v; want %d", len(es), err, (n+1)*len(events))
	}
}

func TestFlush(t *testing.T) {
	ctx := t.Context()
	inner := keepOpen{memstore.New()}
	s, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.AppendAudit(ctx, fullEvent(1)); err != nil {
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 0 {
		t.Fatal("applied before Flush; the test needs it pending")
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 1 {
		t.Fatalf("%d events in the inner store after Flush, want 1", len(es))
	}
}

// The background applier leaves the youngest records pending, so that a
// completion appended right after its request reaches the inner store in
// the same transaction (merged) rather than as an update; Flush applies
// all.
func TestApplyDelay(t *testing.T) {
	ctx := t.Context()
	inner := &txCounter{keepOpen: keepOpen{memstore.New()}}
	s, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old, req := fullEvent(1), fullEvent(2)
	if err := s.AppendAudit(ctx, old); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if err := s.AppendAudit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := s.apply(ctx, cut); err != nil { // what the applier does with cut = now - ApplyDelay
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 1 || es[0].EventID != old.EventID {
		t.Fatalf("inner store after applying the old records: %+v", es)
	}
	done := req
	done.Completes, done.StatusCode = true, 200
	if err := s.AppendAudit(ctx, done); err != nil {
		t.Fatal(err)
	}
	before := inner.txs.Load()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := inner.txs.Load() - before; n != 1 {
		t.Fatalf("Flush applied the request and its completion in %d transactions, want 1", n)
	}
	es, _ := inner.ListAudit(ctx, time.Time{}, 0)
	if len(es) != 2 || es[1].EventID != req.EventID || es[1].StatusCode != 200 {
		t.Fatalf("inner store after Flush: %+v", es)
	}
}

// txCounter counts the inner store's write transactions.
type txCounter struct {
	keepOpen
	txs atomic.Int64
}

func (c *txCounter) ReadWriteTx(ctx context.Context, fn func(context.Context, catalog.RWTx) error) error {
	c.txs.Add(1)
	return c.keepOpen.ReadWriteTx(ctx, fn)
}
