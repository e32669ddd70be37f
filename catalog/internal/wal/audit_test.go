package wal

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
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
	body := AppendAudit(nil, events)
	if body[0] != AuditMagic {
		t.Fatalf("events without completions start with %#x", body[0])
	}
	got, err := DecodeAudit(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, events)
	}
}

// Events with completions take the second form, flags included.
func TestAuditCodecCompletions(t *testing.T) {
	done := fullEvent(1)
	done.Completes = true
	events := []catalog.AuditEvent{fullEvent(1), done, fullEvent(2)}
	body := AppendAudit(nil, events)
	if body[0] != AuditMagic2 {
		t.Fatalf("a body with a completion starts with %#x", body[0])
	}
	got, err := DecodeAudit(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, events)
	}
	// An unknown flag bit is refused (a newer writer's meaning).
	body[len(body)-1] |= 0x80
	if _, err := DecodeAudit(body); err == nil {
		t.Fatal("an unknown flag decoded")
	}
}

// A body with trace ids, guardrail outcomes, usage or a payload takes the
// third form; every field round-trips, and events without them in the
// same body stay without them.
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
	body := AppendAudit(nil, events)
	if body[0] != AuditMagic3 {
		t.Fatalf("a body with usage starts with %#x", body[0])
	}
	got, err := DecodeAudit(body)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, events)
	}
	for n := 1; n < len(body); n++ {
		if _, err := DecodeAudit(body[:n]); err == nil {
			t.Fatalf("a body cut to %d of %d bytes decoded", n, len(body))
		}
	}
}

func TestAuditCodecMalformed(t *testing.T) {
	done := fullEvent(2)
	done.Completes = true
	for _, events := range [][]catalog.AuditEvent{{fullEvent(1), fullEvent(2)}, {fullEvent(1), done}} {
		body := AppendAudit(nil, events)
		for n := 0; n < len(body); n++ {
			if _, err := DecodeAudit(body[:n]); err == nil {
				t.Fatalf("a body cut to %d of %d bytes decoded", n, len(body))
			}
		}
		if _, err := DecodeAudit(append(append([]byte(nil), body...), 0)); err == nil {
			t.Fatal("a body with a trailing byte decoded")
		}
	}
	huge := []byte{AuditMagic, 0xff, 0xff, 0xff, 0xff, 0x0f}
	if _, err := DecodeAudit(huge); err == nil {
		t.Fatal("a count larger than the body decoded")
	}
}

func FuzzAuditDecode(f *testing.F) {
	f.Add(AppendAudit(nil, []catalog.AuditEvent{fullEvent(1)}))
	f.Add([]byte{AuditMagic, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		if b[0] != AuditMagic2 && b[0] != AuditMagic3 {
			b[0] = AuditMagic
		}
		events, err := DecodeAudit(b)
		if err != nil {
			return
		}
		again := AppendAudit(nil, events)
		if _, err := DecodeAudit(again); err != nil {
			t.Fatalf("re-encoded events do not decode: %v", err)
		}
	})
}

func BenchmarkEncodeAudit(b *testing.B) {
	events := make([]catalog.AuditEvent, 64)
	for i := range events {
		events[i] = fullEvent(i)
	}
	buf := make([]byte, 0, AuditSize(events))
	for b.Loop() {
		buf = AppendAudit(buf[:0], events)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// TestReadTornAndCorrupt: a bad record at the end is a torn tail (cut
// off); one with records after it is corruption (refused).
func TestReadTornAndCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.wal")
	var file []byte
	for seq := int64(1); seq <= 3; seq++ {
		buf := append(make([]byte, HeaderSize), []byte("body of record")...)
		if err := Seal(buf, seq); err != nil {
			t.Fatal(err)
		}
		file = append(file, buf...)
	}
	good := int64(len(file))
	write := func(b []byte) *os.File {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	recs, end, err := Read(write(append(append([]byte(nil), file...), 200, 0, 0, 0, 1, 2)), 1)
	if err != nil || end != good || len(recs) != 3 || recs[0].Body != nil || string(recs[2].Body) != "body of record" {
		t.Fatalf("torn tail: %d records, end %d (want %d), %v", len(recs), end, good, err)
	}
	body, err := ReadAt(write(file), recs[1].Offset, recs[1].Size)
	if err != nil || string(body) != "body of record" {
		t.Fatalf("ReadAt: %q, %v", body, err)
	}
	bad := append([]byte(nil), file...)
	bad[HeaderSize+2] ^= 0xff
	if _, _, err := Read(write(bad), 0); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("corruption in the middle: %v, want a refusal", err)
	}
}
