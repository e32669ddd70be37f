package enforce

import (
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

func TestRegoPolicyHook(t *testing.T) {
	svc := newService(t)
	write(t, svc, func(tx *catalog.Tx) error {
		for _, err := range []error{
			tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false),
			tx.CreatePrincipal(catalog.KindGroup, "contractors", nil, false),
			tx.CreatePrincipal(catalog.KindServicePrincipal, "coding-agent", nil, false),
			tx.AddMember("contractors", catalog.KindUser, "alice@example.com"),
			tx.CreateConnection([]string{"system", "ai", "gh"}, "MCP", [][2]string{{"url", "https://gh.example/mcp"}}, false, nil),
			tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, []string{"system", "ai", "gh"}, []string{"alice@example.com", "coding-agent"}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	e, err := NewEngine(t.Context(), svc, Options{Policy: NewPolicyHook(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	req := func(tool string) Request {
		return Request{Subject: "alice@example.com", Actor: "coding-agent", Privilege: catalog.PrivUseConnection,
			Securable: conn("gh"), Context: map[string]any{"method": "tools/call", "tool": tool}}
	}
	if d := e.Decide(t.Context(), req("delete_repo")); !d.Allowed {
		t.Fatalf("no policy yet: %+v", d)
	}
	// A policy on the schema applies to every connection inside it.
	rev := write(t, svc, func(tx *catalog.Tx) error {
		return tx.CreatePolicy("contractors_read_only", catalog.TypeSchema, []string{"system", "ai"}, `package p
deny contains msg if {
	"contractors" in input.groups
	input.method == "tools/call"
	not startswith(input.tool, "get_")
	msg := sprintf("contractors may only read (%s)", [input.tool])
}`)
	})
	d, err := e.DecideAt(t.Context(), req("delete_repo"), rev)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || !strings.Contains(d.Reason, "contractors may only read (delete_repo)") {
		t.Fatalf("policy did not deny: %+v", d)
	}
	if d := e.Decide(t.Context(), req("get_issue")); !d.Allowed {
		t.Fatalf("policy denied a read: %+v", d)
	}
	// A policy that fails at run time denies (fail closed).
	rev = write(t, svc, func(tx *catalog.Tx) error {
		return tx.CreatePolicy("broken", catalog.TypeConnection, []string{"system", "ai", "gh"}, `package q
deny contains msg if { x := 1 / input.arguments.zero; msg := sprintf("%v", [x]) }`)
	})
	r := req("get_issue")
	r.Context["arguments"] = map[string]any{"zero": 0}
	d, err = e.DecideAt(t.Context(), r, rev)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed {
		t.Fatalf("a failing policy allowed: %+v", d)
	}
}

// TestPoliciesPreparedWithTheSnapshot: the engine prepares the catalog's
// policies when it builds a snapshot, before any request, and a policy
// whose name and source did not change is reused, not compiled again, by
// the snapshots of later revisions.
func TestPoliciesPreparedWithTheSnapshot(t *testing.T) {
	svc := newService(t)
	write(t, svc, func(tx *catalog.Tx) error {
		return tx.CreateConnection([]string{"system", "ai", "gh"}, "MCP", [][2]string{{"url", "https://gh.example/mcp"}}, false, nil)
	})
	e := newEngine(t, svc, Options{Policy: NewPolicyHook(time.Second)})
	if e.Snapshot().policies != nil {
		t.Fatal("policies prepared while there are none")
	}
	prepared := func(rev catalog.Revision) *Snapshot {
		t.Helper()
		if _, err := e.DecideAt(t.Context(), Request{Subject: catalog.AdminUser, Privilege: catalog.PrivUseConnection, Securable: conn("gh")}, rev); err != nil {
			t.Fatal(err)
		}
		snap := e.Snapshot()
		if snap.policies == nil || snap.policies.Len() != 1 || snap.policies.Revision != snap.Revision() {
			t.Fatalf("snapshot at %d: policies %+v", snap.Revision(), snap.policies)
		}
		return snap
	}
	first := prepared(write(t, svc, func(tx *catalog.Tx) error {
		return tx.CreatePolicy("p1", catalog.TypeConnection, []string{"system", "ai", "gh"}, "package p\ndeny contains msg if { false; msg := \"x\" }")
	}))
	second := prepared(write(t, svc, func(tx *catalog.Tx) error { // an unrelated change
		return tx.CreatePrincipal(catalog.KindUser, "bob", nil, false)
	}))
	if first == second || !samePrepared(first, second) {
		t.Fatal("an unchanged policy was compiled again for a new revision")
	}
	third := prepared(write(t, svc, func(tx *catalog.Tx) error {
		if err := tx.DropPolicy("p1", false); err != nil {
			return err
		}
		return tx.CreatePolicy("p1", catalog.TypeConnection, []string{"system", "ai", "gh"}, "package p\ndeny contains msg if { false; msg := \"y\" }")
	}))
	if samePrepared(second, third) {
		t.Fatal("a changed policy was not compiled again")
	}
}

// samePrepared reports whether two snapshots share their prepared policy.
func samePrepared(a, b *Snapshot) bool {
	return a.policies.Prepared("p1") != nil && a.policies.Prepared("p1") == b.policies.Prepared("p1")
}

// A policy on a model service sees the LLM call's input: model, request
// size, max_tokens, tools and tags; EXECUTE is decided first.
func TestRegoPolicyOnModelService(t *testing.T) {
	svc := newService(t)
	rev := write(t, svc, func(tx *catalog.Tx) error {
		for _, err := range []error{
			tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false),
			tx.CreateProviderService([]string{"system", "ai", "openai_prod"}, [][2]string{{"provider", "openai"}, {"api_key", "k"}}, false, nil),
			tx.CreateModelService([]string{"system", "ai", "frontier"}, [][2]string{{"destinations", "openai_prod/gpt-4.1"}}, false, nil),
			tx.Grant([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeModelService, []string{"system", "ai", "frontier"}, []string{"alice@example.com"}),
			tx.CreatePolicy("small_calls", catalog.TypeModelService, []string{"system", "ai", "frontier"}, `package llm
deny contains msg if { input.max_tokens > 4096; msg := sprintf("max_tokens %d over 4096 on %s", [input.max_tokens, input.model]) }
deny contains "no shell tool" if { "shell" in input.tools }
deny contains "untagged" if { not input.tags.project }
deny contains "too large" if { input.request_bytes > 1000000 }`),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	e, err := NewEngine(t.Context(), svc, Options{Policy: NewPolicyHook(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	call := func(maxTokens int, tools []any, tags map[string]any) Request {
		return Request{Subject: "alice@example.com", Privilege: catalog.PrivExecute,
			Securable: SecurableRef{Type: catalog.TypeModelService, Name: "frontier"},
			Context: map[string]any{"method": "chat.completions", "model": "frontier", "request_bytes": 1024,
				"max_tokens": maxTokens, "tools": tools, "tags": tags, "stream": false}}
	}
	for _, tc := range []struct {
		r    Request
		deny string
	}{
		{call(1000, []any{"search"}, map[string]any{"project": "checkout"}), ""},
		{call(8192, nil, map[string]any{"project": "checkout"}), "max_tokens 8192 over 4096 on frontier"},
		{call(10, []any{"shell"}, map[string]any{"project": "checkout"}), "no shell tool"},
		{call(10, nil, map[string]any{}), "untagged"},
	} {
		d, err := e.DecideAt(t.Context(), tc.r, rev)
		if err != nil {
			t.Fatal(err)
		}
		if (tc.deny == "") != d.Allowed || (tc.deny != "" && !strings.Contains(d.Reason, tc.deny)) {
			t.Errorf("%v: %+v, want deny %q", tc.r.Context, d, tc.deny)
		}
	}
}

// countingContext is a Request.LazyContext that counts its builds.
type countingContext struct {
	n int
	m map[string]any
}

func (c *countingContext) PolicyContext() map[string]any {
	c.n++
	return c.m
}

// TestLazyContext: a request's LazyContext is built only when a policy
// applies to the securable, and then the policy sees the same input
// document as with the map in Context.
func TestLazyContext(t *testing.T) {
	svc := newService(t)
	rev := write(t, svc, func(tx *catalog.Tx) error {
		for _, err := range []error{
			tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false),
			tx.CreateProviderService([]string{"system", "ai", "openai_prod"}, [][2]string{{"provider", "openai"}, {"api_key", "k"}}, false, nil),
			tx.CreateModelService([]string{"system", "ai", "frontier"}, [][2]string{{"destinations", "openai_prod/gpt-4.1"}}, false, nil),
			tx.CreateModelService([]string{"system", "ai", "plain"}, [][2]string{{"destinations", "openai_prod/gpt-4.1"}}, false, nil),
			tx.Grant([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeModelService, []string{"system", "ai", "frontier"}, []string{"alice@example.com"}),
			tx.Grant([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeModelService, []string{"system", "ai", "plain"}, []string{"alice@example.com"}),
			tx.CreatePolicy("echo_input", catalog.TypeModelService, []string{"system", "ai", "frontier"}, `package llm
deny contains json.marshal(object.remove(input, {"time"}))`),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	e, err := NewEngine(t.Context(), svc, Options{Policy: NewPolicyHook(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	m := map[string]any{"method": "chat.completions", "model": "frontier", "request_bytes": 1024, "max_tokens": int64(300),
		"tools": []any{"search", "shell"}, "tags": map[string]any{"project": "checkout"}, "stream": true, "source_ip": "10.0.0.1"}
	req := func(name string) Request {
		return Request{Subject: "alice@example.com", Privilege: catalog.PrivExecute,
			Securable: SecurableRef{Type: catalog.TypeModelService, Name: name}}
	}
	lazy := &countingContext{m: m}
	r := req("plain")
	r.LazyContext = lazy
	if d, err := e.DecideAt(t.Context(), r, rev); err != nil || !d.Allowed || d.Contextual {
		t.Fatalf("no policy: %+v %v", d, err)
	}
	if ok, _ := e.Allowed(t.Context(), r); !ok || lazy.n != 0 {
		t.Fatalf("no policy: allowed %v, context built %d times", ok, lazy.n)
	}
	eager := req("frontier")
	eager.Context = m
	want := e.Decide(t.Context(), eager)
	r = req("frontier")
	r.LazyContext = lazy
	got := e.Decide(t.Context(), r)
	if lazy.n != 1 || got.Allowed || got.Reason != want.Reason || !strings.Contains(got.Reason, `"tools":["search","shell"]`) {
		t.Fatalf("built %d times: %+v, want %+v", lazy.n, got, want)
	}
	if ok, _ := e.Allowed(t.Context(), r); ok || lazy.n != 2 {
		t.Fatalf("Allowed with the policy: %v, built %d times", ok, lazy.n)
	}
}
