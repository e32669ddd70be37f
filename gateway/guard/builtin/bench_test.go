package builtin_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/injection"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
	"github.com/mandatehq/mandate/gateway/guard/pin"
	"github.com/mandatehq/mandate/gateway/guard/schema"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
)

// A 4 KB tools/call result: a text block (an issue tracker answer with a
// couple of e-mail addresses, a link, a stack trace) and structuredContent
// conforming to the tool's outputSchema.
func toolResult() []byte {
	var sb strings.Builder
	sb.WriteString("Issue #4471 Checkout page times out (opened by carol@example.org)\n")
	for sb.Len() < 3100 {
		sb.WriteString("Steps: add three items to the cart, click checkout; the payment page spins. Logs show upstream timeouts from the payments service after 30 s. ")
		sb.WriteString("See https://wiki.corp.example/runbooks/payments for the runbook. Assigned to bo@example.com. ")
	}
	issues := make([]map[string]any, 0, 8)
	for i := range 8 {
		issues = append(issues, map[string]any{"id": 4400 + i, "title": fmt.Sprint("Checkout regression ", i), "state": "open", "url": fmt.Sprintf("https://tracker.corp.example/i/%d", 4400+i)})
	}
	res := map[string]any{
		"content":           []map[string]any{{"type": "text", "text": sb.String()}},
		"structuredContent": map[string]any{"total": 8, "issues": issues},
	}
	b, _ := json.Marshal(res)
	return b
}

const outputSchema = `{"type":"object","required":["total","issues"],"properties":{"total":{"type":"integer"},"issues":{"type":"array","items":{"type":"object","required":["id","title","state"],"properties":{"id":{"type":"integer"},"title":{"type":"string"},"state":{"enum":["open","closed"]},"url":{"type":"string"}}}}}}`

const toolDef = `{"name":"search_issues","description":"Search the issue tracker.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]},"outputSchema":` + outputSchema + `}`

type five struct {
	sens   *sensitive.Guard
	inj    *injection.Guard
	exf    *exfil.Guard
	tri    *exfil.Trifecta
	cache  *schema.Cache
	pins   map[string]string
	tool   pin.Tool
	run    string
	tags   exfil.Tags
	target exfil.Tags
}

func setup(b *testing.B) *five {
	f := &five{cache: schema.NewCache(1024, schema.Limits{})}
	var err error
	if f.sens, err = sensitive.Compile(map[string]string{"action": "mask"}); err != nil {
		b.Fatal(err)
	}
	if f.inj, err = injection.Compile(map[string]string{"threshold": "0.8"}); err != nil {
		b.Fatal(err)
	}
	if f.exf, err = exfil.Compile(map[string]string{"allowed_domains": "*.corp.example, example.com, example.org"}); err != nil {
		b.Fatal(err)
	}
	f.tri = &exfil.Trifecta{Store: exfil.NewMemoryStore(time.Hour, 100000, nil)}
	if f.tool, err = pin.HashTool([]byte(toolDef)); err != nil {
		b.Fatal(err)
	}
	f.pins = map[string]string{f.tool.Name: f.tool.Hash}
	f.run, _ = exfil.RunKey("alice", "agent", "run-1")
	f.tags = exfil.Tags{Private: true}
	f.target = exfil.Tags{External: true}
	return f
}

// result runs the five guardrails on one tool result, as the gateway's
// "guard result" stage would (plus the call-side checks of the same call:
// trifecta and pin).
func (f *five) result(b *testing.B, raw []byte) {
	ctx := b.Context()
	if c := pin.Compare(f.pins, []pin.Tool{f.tool}); c[0].Status != pin.Approved {
		b.Fatal("pin")
	}
	if d, err := f.tri.Check(ctx, f.run, "system.ai.tracker", exfil.Tags{}); err != nil || d.Deny {
		b.Fatal("trifecta", err)
	}
	if err := f.cache.ToolResult([]byte(outputSchema), raw); err != nil {
		b.Fatal(err)
	}
	if v, err := f.inj.EvaluateJSON(ctx, raw, nil); err != nil || v.Block {
		b.Fatal("injection", v.Score, err)
	}
	if vs, err := f.exf.CheckJSON(raw); err != nil || len(vs) != 0 {
		b.Fatal("exfil", vs, err)
	}
	if err := f.tri.Received(ctx, f.run, "system.ai.tracker", f.tags); err != nil {
		b.Fatal(err)
	}
	o, err := f.sens.JSON(sensitive.NewMaskContext(), guard.Result, raw)
	if err != nil || !o.Found() {
		b.Fatal("sensitive", err)
	}
}

// cpuTime is the process's CPU time: on a shared machine, CPU time per
// operation is what the guardrails cost a core, whatever other jobs take.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentiles(b *testing.B, d []time.Duration, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(len(d)), "cpu-µs/op")
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// shared runs the five guardrails on one tool result decoded once
// (jsonwalk.Doc), as the gateway's guard stage does.
func (f *five) shared(b *testing.B, raw []byte) {
	ctx := b.Context()
	doc := jsonwalk.GetDoc()
	defer jsonwalk.PutDoc(doc)
	if err := doc.Parse(raw); err != nil {
		b.Fatal(err)
	}
	if c := pin.Compare(f.pins, []pin.Tool{f.tool}); c[0].Status != pin.Approved {
		b.Fatal("pin")
	}
	if d, err := f.tri.Check(ctx, f.run, "system.ai.tracker", exfil.Tags{}); err != nil || d.Deny {
		b.Fatal("trifecta", err)
	}
	if err := f.cache.ToolResultDoc([]byte(outputSchema), doc); err != nil {
		b.Fatal(err)
	}
	if v, err := f.inj.EvaluateDoc(ctx, doc, nil); err != nil || v.Block {
		b.Fatal("injection", v.Score, err)
	}
	if vs, err := f.exf.CheckDoc(doc); err != nil || len(vs) != 0 {
		b.Fatal("exfil", vs, err)
	}
	if err := f.tri.Received(ctx, f.run, "system.ai.tracker", f.tags); err != nil {
		b.Fatal(err)
	}
	o, err := f.sens.JSONDoc(sensitive.NewMaskContext(), guard.Result, doc)
	if err != nil || !o.Found() {
		b.Fatal("sensitive", err)
	}
}

// BenchmarkAllFive is the added latency of the five guardrails on a 4 KB
// tool result, with per-call percentiles: each guardrail decoding the
// result itself ("separate", before) and one decoding shared by all
// ("shared", what the guard stage does), in the same run.
func BenchmarkAllFive(b *testing.B) {
	raw := toolResult()
	if len(raw) < 4000 || len(raw) > 4400 {
		b.Fatalf("result is %d bytes", len(raw))
	}
	f := setup(b)
	b.Run("tool-result-4KB-shared", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		var d []time.Duration
		c0 := cpuTime()
		for b.Loop() {
			t0 := time.Now()
			f.shared(b, raw)
			d = append(d, time.Since(t0))
		}
		percentiles(b, d, cpuTime()-c0)
	})
	b.Run("tool-result-4KB-separate", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		b.ReportAllocs()
		var d []time.Duration
		c0 := cpuTime()
		for b.Loop() {
			t0 := time.Now()
			f.result(b, raw)
			d = append(d, time.Since(t0))
		}
		percentiles(b, d, cpuTime()-c0)
	})
	// each guardrail alone on the same result
	ctx := b.Context()
	for _, g := range []struct {
		name string
		fn   func()
	}{
		{"sensitive", func() { f.sens.JSON(sensitive.NewMaskContext(), guard.Result, raw) }},
		{"injection", func() { f.inj.EvaluateJSON(ctx, raw, nil) }},
		{"exfil", func() { f.exf.CheckJSON(raw); f.tri.Received(ctx, f.run, "s", f.tags) }},
		{"schema", func() { f.cache.ToolResult([]byte(outputSchema), raw) }},
		{"pin", func() { pin.Compare(f.pins, []pin.Tool{f.tool}) }},
	} {
		b.Run(g.name, func(b *testing.B) {
			b.ReportAllocs()
			var d []time.Duration
			c0 := cpuTime()
			for b.Loop() {
				t0 := time.Now()
				g.fn()
				d = append(d, time.Since(t0))
			}
			percentiles(b, d, cpuTime()-c0)
		})
	}
	// a 4 KB chat answer: sensitive (mask), injection, exfil (links in the
	// text), schema (response_format) — pinning does not apply
	answer := answerJSON()
	rf := []byte(`{"type":"json_schema","json_schema":{"name":"summary","schema":{"type":"object","required":["summary","links"],"properties":{"summary":{"type":"string"},"links":{"type":"array","items":{"type":"string"}}}}}}`)
	sch, _, _ := schema.ResponseFormatSchema(rf)
	b.Run("chat-answer-4KB-shared", func(b *testing.B) {
		b.SetBytes(int64(len(answer)))
		b.ReportAllocs()
		var d []time.Duration
		c0 := cpuTime()
		doc := jsonwalk.GetDoc()
		for b.Loop() {
			t0 := time.Now()
			if err := doc.Parse(answer); err != nil {
				b.Fatal(err)
			}
			if err := f.cache.Answer(sch, answer); err != nil {
				b.Fatal(err)
			}
			f.sens.JSONDoc(sensitive.NewMaskContext(), guard.Result, doc)
			f.inj.EvaluateDoc(ctx, doc, nil)
			f.exf.CheckDoc(doc)
			d = append(d, time.Since(t0))
		}
		percentiles(b, d, cpuTime()-c0)
	})
	b.Run("chat-answer-4KB-separate", func(b *testing.B) {
		b.SetBytes(int64(len(answer)))
		b.ReportAllocs()
		var d []time.Duration
		c0 := cpuTime()
		for b.Loop() {
			t0 := time.Now()
			if err := f.cache.Answer(sch, answer); err != nil {
				b.Fatal(err)
			}
			f.sens.JSON(sensitive.NewMaskContext(), guard.Result, answer)
			f.inj.EvaluateJSON(ctx, answer, nil)
			f.exf.CheckJSON(answer)
			d = append(d, time.Since(t0))
		}
		percentiles(b, d, cpuTime()-c0)
	})
}

func answerJSON() []byte {
	var sb strings.Builder
	for sb.Len() < 3700 {
		sb.WriteString("The checkout timeouts started after the payments deploy on Tuesday; the runbook recommends rolling back and raising the client timeout. ")
	}
	b, _ := json.Marshal(map[string]any{"summary": sb.String(), "links": []string{"https://wiki.corp.example/runbooks/payments", "https://tracker.corp.example/i/4471"}})
	return b
}

// BenchmarkCalibration is a plain byte loop over 4 KB, run with the
// others: on this shared VM it tells how much of a core the benchmarks
// got (an idle core does it in about 1.5 µs).
func BenchmarkCalibration(b *testing.B) {
	buf := toolResult()
	b.SetBytes(int64(len(buf)))
	n, ops := 0, 0
	c0 := cpuTime()
	for b.Loop() {
		for _, c := range buf {
			if c == 0 {
				n++
			}
		}
		ops++
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/1e3/float64(ops), "cpu-µs/op")
	if n != 0 {
		b.Fatal(n)
	}
}
