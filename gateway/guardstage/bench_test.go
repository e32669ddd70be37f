package guardstage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// result4KB is a 4 KB tools/call result: a text block (an issue tracker
// answer with e-mail addresses and links) and structuredContent that
// conforms to the tool's outputSchema (as gateway/guard/builtin's
// benchmark).
func result4KB() string {
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
	res := map[string]any{"content": []map[string]any{{"type": "text", "text": sb.String()}}, "structuredContent": map[string]any{"total": 8, "issues": issues}}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "result": res})
	return string(b)
}

const issuesSchema = `{"type":"object","required":["total","issues"],"properties":{"total":{"type":"integer"},"issues":{"type":"array","items":{"type":"object","required":["id","title","state"],"properties":{"id":{"type":"integer"},"title":{"type":"string"},"state":{"enum":["open","closed"]},"url":{"type":"string"}}}}}}`

// fiveEnv is a connection with all five built-ins on it: the result is
// masked (e-mails), scored, its links allowed, its schema valid, its tool
// approved.
func fiveEnv(t testing.TB) *env {
	e := newEnv(t)
	e.connection("tracker")
	on := []string{"system", "ai", "tracker"}
	e.policy("pii", catalog.TypeConnection, on, builtinDef("detect_sensitive_data", map[string]string{"action": "mask"}))
	e.policy("no_injection", catalog.TypeConnection, on, builtinDef("block_prompt_injection", map[string]string{"threshold": "0.8"}))
	e.policy("no_exfil", catalog.TypeConnection, on, builtinDef("prevent_exfiltration", map[string]string{"allowed_domains": "*.corp.example, example.com, example.org"}))
	e.policy("schemas", catalog.TypeConnection, on, builtinDef("validate_schema", nil))
	e.policy("pins", catalog.TypeConnection, on, builtinDef("pin_tools", map[string]string{"approve": "first_seen"}))
	l := e.call("tracker", "tools/list", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "t1")
	def := `{"name":"search_issues","description":"Search the issue tracker.","inputSchema":{"type":"object"},"outputSchema":` + issuesSchema + `}`
	if v := e.guardResult(l, toolsList(def)); v.Action != pipeline.Allow {
		t.Fatalf("tools/list %+v", v)
	}
	return e
}

func TestFiveOnALargeResult(t *testing.T) {
	e := fiveEnv(t)
	c := e.call("tracker", "tools/call", "search_issues", toolCall("search_issues", `{"q":"checkout"}`), "t1")
	if v := e.guardCall(c); v.Action != pipeline.Allow {
		t.Fatalf("call %+v", v)
	}
	v := e.guardResult(c, result4KB())
	if v.Action != pipeline.Rewrite || strings.Contains(string(v.Body), "bo@example.com") {
		t.Fatalf("result %v", v.Action)
	}
	if got := outcomes(c); !strings.HasPrefix(got, "pii:result:enforce:mask:EMAIL=") {
		t.Fatalf("outcomes %s", got)
	}
}

// BenchmarkResult4KB is what the guard stage adds to a 4 KB tools/call
// result with all five built-ins attached: p50 and p99 per result, wall
// clock, and CPU time.
func BenchmarkResult4KB(b *testing.B) {
	e := fiveEnv(b)
	body := []byte(result4KB())
	ctx := context.Background()
	var d []time.Duration
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c := e.call("tracker", "tools/call", "search_issues", toolCall("search_issues", `{"q":"checkout"}`), "t1")
		t0 := time.Now()
		if v, err := e.stage.Call(ctx, c, c.Content); err != nil || v.Action != pipeline.Allow {
			b.Fatal(v, err)
		}
		rg, err := e.stage.Result(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		v, err := rg.Piece(ctx, c, &pipeline.Content{Format: pipeline.FormatMCP, Body: body, Final: true})
		if err != nil || v.Action != pipeline.Rewrite {
			b.Fatal(v.Action, err)
		}
		d = append(d, time.Since(t0))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}
