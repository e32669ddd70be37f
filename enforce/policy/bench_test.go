package policy

import (
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// roleBased is a role-based policy of the kind OPA's docs benchmark: is one
// of the caller's groups allowed to call the tool?
const roleBased = `package mandate.rbac

roles := {
	"data-analysts": {"search_issues", "get_issue", "list_repos"},
	"engineers": {"search_issues", "get_issue", "list_repos", "create_issue", "merge_pr"},
	"contractors": {"search_issues"},
}

deny contains msg if {
	input.method == "tools/call"
	not allowed
	msg := sprintf("no role of the caller may call %q", [input.tool])
}

allowed if {
	some g in input.groups
	input.tool in roles[g]
}
`

var benchInput = map[string]any{
	"subject": "alice@example.com", "actor": "coding-agent",
	"groups": []any{"account users", "data-analysts"},
	"method": "tools/call", "tool": "get_issue",
	"arguments": map[string]any{"owner": "mandate", "repo": "mandate", "number": 7},
	"source_ip": "127.0.0.1", "time": "2026-11-25T12:00:00Z",
}

func report(b *testing.B, lat []time.Duration) {
	b.Helper()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
}

// BenchmarkPolicy evaluates the role-based policy through Mandate's wrapper
// (Compiled.Deny: time limit, result checks) and through OPA alone
// (PreparedEvalQuery.Eval on the same prepared query), in the same run.
func BenchmarkPolicy(b *testing.B) {
	c, err := Compile(b.Context(), "rbac", roleBased)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("mandate", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			msgs, err := c.Deny(b.Context(), benchInput, DefaultLimit)
			lat = append(lat, time.Since(t0))
			if err != nil || len(msgs) != 0 {
				b.Fatalf("deny = %v, %v", msgs, err)
			}
		}
		report(b, lat)
	})
	b.Run("opa-alone", func(b *testing.B) {
		pq, err := rego.New(rego.Query("data.mandate.rbac.deny"), rego.Module("rbac.rego", roleBased),
			rego.SetRegoVersion(ast.RegoV1)).PrepareForEval(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		lat := make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			rs, err := pq.Eval(b.Context(), rego.EvalInput(benchInput))
			lat = append(lat, time.Since(t0))
			if err != nil || len(rs) != 1 {
				b.Fatalf("eval = %v, %v", rs, err)
			}
		}
		report(b, lat)
	})
}
