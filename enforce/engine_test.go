package enforce

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// fixture builds the catalog of the Decide tests:
//
//	alice → data-analysts → analytics → everyone-eng; carol → everyone-eng
//	bob → tool-owners (owns schema eng.owned); root → admins (an admin group)
//	everyone-eng: USE CATALOG eng, USE CONNECTION eng.tools.jira
//	analytics: USE SCHEMA eng.tools; data-analysts: USE CONNECTION system.ai.my_github_mcp
//	coding-agent: USE CATALOG eng, USE SCHEMA eng.tools, USE CONNECTION eng.tools.jira
//	reader-agent: ALL PRIVILEGES on catalog eng; bob: USE CATALOG eng
func fixture(t testing.TB) *catalog.Service {
	t.Helper()
	svc := newService(t, catalog.Principal{Name: "admins", Kind: catalog.KindGroup, Admin: true})
	write(t, svc, func(tx *catalog.Tx) error {
		for _, p := range []struct {
			kind catalog.PrincipalKind
			name string
		}{
			{catalog.KindUser, "alice@example.com"}, {catalog.KindUser, "bob@example.com"},
			{catalog.KindUser, "carol@example.com"}, {catalog.KindUser, "root@example.com"},
			{catalog.KindServicePrincipal, "coding-agent"}, {catalog.KindServicePrincipal, "reader-agent"},
			{catalog.KindGroup, "data-analysts"}, {catalog.KindGroup, "analytics"},
			{catalog.KindGroup, "everyone-eng"}, {catalog.KindGroup, "tool-owners"},
		} {
			if err := tx.CreatePrincipal(p.kind, p.name, nil, false); err != nil {
				return err
			}
		}
		for _, m := range [][3]string{
			{"data-analysts", "USER", "alice@example.com"}, {"analytics", "GROUP", "data-analysts"},
			{"everyone-eng", "GROUP", "analytics"}, {"everyone-eng", "USER", "carol@example.com"},
			{"admins", "USER", "root@example.com"}, {"tool-owners", "USER", "bob@example.com"},
		} {
			if err := tx.AddMember(m[0], catalog.PrincipalKind(m[1]), m[2]); err != nil {
				return err
			}
		}
		url := [][2]string{{"url", "https://example.com/mcp"}}
		steps := []func() error{
			func() error { return tx.CreateCatalog("eng", false, nil) },
			func() error { return tx.CreateSchema([]string{"eng", "tools"}, false, nil) },
			func() error { return tx.CreateSchema([]string{"eng", "owned"}, false, nil) },
			func() error { return tx.CreateConnection([]string{"eng", "tools", "jira"}, "MCP", url, false, nil) },
			func() error {
				return tx.CreateConnection([]string{"system", "ai", "my_github_mcp"}, "MCP", url, false, nil)
			},
			func() error { return tx.SetOwner(catalog.TypeSchema, []string{"eng", "owned"}, "tool-owners") },
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
		for _, g := range []struct {
			priv catalog.Privilege
			typ  catalog.SecurableType
			path string
			to   string
		}{
			{catalog.PrivUseCatalog, catalog.TypeCatalog, "eng", "everyone-eng"},
			{catalog.PrivUseSchema, catalog.TypeSchema, "eng.tools", "analytics"},
			{catalog.PrivUseConnection, catalog.TypeConnection, "eng.tools.jira", "everyone-eng"},
			{catalog.PrivUseConnection, catalog.TypeConnection, "system.ai.my_github_mcp", "data-analysts"},
			{catalog.PrivUseCatalog, catalog.TypeCatalog, "eng", "coding-agent"},
			{catalog.PrivUseSchema, catalog.TypeSchema, "eng.tools", "coding-agent"},
			{catalog.PrivUseConnection, catalog.TypeConnection, "eng.tools.jira", "coding-agent"},
			{catalog.PrivAll, catalog.TypeCatalog, "eng", "reader-agent"},
			{catalog.PrivUseCatalog, catalog.TypeCatalog, "eng", "bob@example.com"},
		} {
			if err := tx.Grant([]catalog.Privilege{g.priv}, g.typ, strings.Split(g.path, "."), []string{g.to}); err != nil {
				return err
			}
		}
		return nil
	})
	return svc
}

func newEngine(t testing.TB, svc *catalog.Service, o Options) *Engine {
	t.Helper()
	e, err := NewEngine(t.Context(), svc, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestDecide(t *testing.T) {
	e := newEngine(t, fixture(t), Options{})
	const (
		alice  = "alice@example.com"
		agent  = "coding-agent"
		jira   = "eng.tools.jira"
		github = "my_github_mcp"
	)
	schema := func(name string) SecurableRef { return SecurableRef{Type: catalog.TypeSchema, Name: name} }
	tests := []struct {
		name       string
		req        Request
		allowed    bool
		reason     []string // substrings of the reason
		steps      int      // -1: not checked
		stepsRoles string   // roles of the steps, in order, first letters ("sssaaa")
	}{
		{"on behalf of, both hold it",
			Request{Subject: alice, Actor: agent, Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, true,
			[]string{`subject "alice@example.com" allowed: USE CATALOG on CATALOG eng: USE CATALOG granted to GROUP "everyone-eng" (via "alice@example.com" → "data-analysts" → analytics → "everyone-eng")`,
				`USE SCHEMA on SCHEMA eng.tools: USE SCHEMA granted to GROUP analytics (via "alice@example.com" → "data-analysts" → analytics)`,
				`; actor "coding-agent" allowed: `,
				`USE CONNECTION on CONNECTION eng.tools.jira: USE CONNECTION granted to SERVICE PRINCIPAL "coding-agent"`},
			6, "sssaaa"},
		{"on behalf of, the actor lacks it",
			Request{Subject: alice, Actor: agent, Privilege: catalog.PrivUseConnection, Securable: conn(github)}, false,
			[]string{`subject "alice@example.com" allowed: `, `USE CONNECTION granted to GROUP "data-analysts" (via "alice@example.com" → "data-analysts")`,
				`; actor "coding-agent" lacks USE CONNECTION on CONNECTION system.ai.my_github_mcp`},
			6, "sssaaa"},
		{"on behalf of, the subject lacks a USE SCHEMA prerequisite",
			Request{Subject: "carol@example.com", Actor: agent, Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, false,
			[]string{`subject "carol@example.com" lacks USE SCHEMA on SCHEMA eng.tools; actor "coding-agent" allowed`}, 6, "sssaaa"},
		{"on behalf of, the subject lacks a USE CATALOG prerequisite",
			Request{Subject: "bob@example.com", Actor: agent, Privilege: catalog.PrivUseConnection, Securable: conn(github)}, false,
			[]string{`subject "bob@example.com" lacks USE CONNECTION on CONNECTION system.ai.my_github_mcp`}, 6, "sssaaa"},
		{"agent on its own",
			Request{Subject: agent, Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, true,
			[]string{`subject "coding-agent" allowed: USE CATALOG on CATALOG eng: USE CATALOG granted to SERVICE PRINCIPAL "coding-agent"`}, 3, "sss"},
		{"ALL PRIVILEGES on the catalog, inherited",
			Request{Subject: "reader-agent", Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, true,
			[]string{`USE CONNECTION on CONNECTION eng.tools.jira: ALL PRIVILEGES granted to SERVICE PRINCIPAL "reader-agent", inherited from CATALOG eng`}, 3, "sss"},
		{"ALL PRIVILEGES does not include MANAGE",
			Request{Subject: "reader-agent", Privilege: catalog.PrivManage, Securable: SecurableRef{Type: catalog.TypeCatalog, Name: "eng"}}, false,
			[]string{`subject "reader-agent" lacks MANAGE on CATALOG eng`}, 2, "ss"},
		{"owned through a group",
			Request{Subject: "bob@example.com", Privilege: catalog.PrivCreateConnection, Securable: schema("eng.owned")}, true,
			[]string{`USE SCHEMA on SCHEMA eng.owned: owned by "tool-owners" (via "bob@example.com" → "tool-owners")`,
				`CREATE CONNECTION on SCHEMA eng.owned: owned by "tool-owners"`, `USE CATALOG granted to USER "bob@example.com"`}, 3, "sss"},
		{"built-in admin",
			Request{Subject: catalog.AdminUser, Privilege: catalog.PrivManage, Securable: conn(jira)}, true,
			[]string{`subject admin is a metastore admin: MANAGE on CONNECTION eng.tools.jira allowed`}, 3, "sss"},
		{"admin through a group",
			Request{Subject: "root@example.com", Privilege: catalog.PrivCreateCatalog, Securable: SecurableRef{Type: catalog.TypeMetastore}}, true,
			[]string{`subject "root@example.com" is a metastore admin (via "root@example.com" → admins): CREATE CATALOG on METASTORE metastore allowed`}, 1, "s"},
		{"metastore privilege missing",
			Request{Subject: alice, Privilege: catalog.PrivCreateCatalog, Securable: SecurableRef{Type: catalog.TypeMetastore, Name: "metastore"}}, false,
			[]string{`subject "alice@example.com" lacks CREATE CATALOG on METASTORE metastore`}, 1, "s"},
		{"two-part name resolves in system",
			Request{Subject: alice, Privilege: catalog.PrivUseConnection, Securable: conn("ai.my_github_mcp")}, true, nil, 3, "sss"},
		{"account users hold USE CATALOG on system",
			Request{Subject: alice, Privilege: catalog.PrivUseSchema, Securable: schema("ai")}, true,
			[]string{`USE CATALOG on CATALOG system: USE CATALOG granted to GROUP "account users" (via "alice@example.com" → "account users")`}, 2, "ss"},
		{"privilege in SQL spelling, name in upper case",
			Request{Subject: alice, Privilege: "use connection", Securable: SecurableRef{Type: "connection", Name: "ENG.TOOLS.JIRA"}}, true, nil, 3, "sss"},
		{"unknown subject",
			Request{Subject: "mallory", Actor: agent, Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, false,
			[]string{`subject mallory does not exist; actor "coding-agent" allowed`}, 4, "saaa"},
		{"unknown actor",
			Request{Subject: alice, Actor: "ghost-agent", Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, false,
			[]string{`; actor "ghost-agent" does not exist`}, 4, "sssa"},
		{"no subject",
			Request{Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, false, []string{"no subject given"}, 1, "s"},
		{"actor that is a user",
			Request{Subject: alice, Actor: "bob@example.com", Privilege: catalog.PrivUseConnection, Securable: conn(jira)}, false,
			[]string{`actor "bob@example.com" is a user; the actor must be a service principal`}, 4, "sssa"},
		{"subject that is a group",
			Request{Subject: "data-analysts", Privilege: catalog.PrivUseConnection, Securable: conn(github)}, false,
			[]string{`subject "data-analysts" is a group; the subject must be a user or a service principal`}, 1, "s"},
		{"unknown securable",
			Request{Subject: alice, Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.nope")}, false,
			[]string{"connection eng.tools.nope does not exist"}, 0, ""},
		{"unknown privilege",
			Request{Subject: alice, Privilege: "FLY", Securable: conn(jira)}, false, []string{`unknown privilege "FLY"`}, 0, ""},
		{"unsupported securable type",
			Request{Subject: alice, Privilege: catalog.PrivUseConnection, Securable: SecurableRef{Type: "VOLUME", Name: "a.b.c"}}, false,
			[]string{`unsupported securable type "VOLUME"`}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Explain = true
			d := e.Decide(t.Context(), req)
			if brief := e.Decide(t.Context(), tc.req); brief.Allowed != d.Allowed || brief.Reason != d.Reason || brief.Steps != nil {
				t.Errorf("brief decision %+v differs from the explained one %+v", brief, d)
			}
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v; reason: %s", d.Allowed, tc.allowed, d.Reason)
			}
			for _, want := range tc.reason {
				if !strings.Contains(d.Reason, want) {
					t.Errorf("reason %q\ndoes not contain %q", d.Reason, want)
				}
			}
			if strings.Contains(d.Reason, "\n") || d.Reason == "" {
				t.Errorf("reason %q is not one line", d.Reason)
			}
			if d.Revision != e.Revision() {
				t.Errorf("revision %d, engine at %d", d.Revision, e.Revision())
			}
			roles := ""
			for _, s := range d.Steps {
				roles += s.Role[:1]
				if s.Result != "allow" && s.Result != "deny" || s.Check == "" || s.Reason == "" {
					t.Errorf("incomplete step %+v", s)
				}
			}
			if len(d.Steps) != tc.steps || roles != tc.stepsRoles {
				t.Errorf("steps %+v: want %d with roles %q", d.Steps, tc.steps, tc.stepsRoles)
			}
			if ok, rev := e.Allowed(t.Context(), tc.req); ok != d.Allowed || rev != d.Revision {
				t.Errorf("Allowed = %v at %d, Decide %v at %d", ok, rev, d.Allowed, d.Revision)
			}
		})
	}
}

// TestAllowedDoesNotAllocate holds the allow path to zero allocations.
func TestAllowedDoesNotAllocate(t *testing.T) {
	e := newEngine(t, fixture(t), Options{})
	for _, req := range []Request{
		{Subject: "alice@example.com", Actor: "coding-agent", Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.jira")},
		{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Securable: conn("my_github_mcp")},
		{Subject: "reader-agent", Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.jira")},
	} {
		t.Run(req.Subject+"/"+req.Securable.Name, func(t *testing.T) {
			ctx := t.Context()
			if ok, _ := e.Allowed(ctx, req); !ok {
				t.Fatalf("%+v is not allowed: %s", req, e.Decide(ctx, req).Reason)
			}
			if n := testing.AllocsPerRun(1000, func() { e.Allowed(ctx, req) }); n != 0 {
				t.Fatalf("Allowed allocates %.1f times per call", n)
			}
		})
	}
}

// TestCompileAllocatesNoMemo: compiling a snapshot allocates no table of
// answers (256 KiB) until a question is asked, so that a replica
// following a stream of catalog writes (one compile per commit) does not
// allocate and clear one per commit; the first question allocates it.
func TestCompileAllocatesNoMemo(t *testing.T) {
	svc := fixture(t)
	const n = 20
	var snaps [n]*Snapshot
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range snaps {
		svc.Read(func(m *catalog.Model) { snaps[i] = Compile(m) })
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per >= memoSize*8/4 {
		t.Fatalf("a compile allocates %d bytes; the memo alone is %d", per, memoSize*8)
	}
	req := Request{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Securable: conn("my_github_mcp")}
	runtime.ReadMemStats(&before)
	for range 2 { // the second answer comes from the memo
		if !snaps[0].Allowed(req) {
			t.Fatal("denied")
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got < memoSize*8 {
		t.Fatalf("the first question allocated %d bytes, not the memo", got)
	}
}

// TestEngineFollowsCatalog: a GRANT and a REVOKE committed through the
// catalog reach the decisions, DecideAt waits for the revision, and
// Subscribe reports the new snapshots.
func TestEngineFollowsCatalog(t *testing.T) {
	svc := fixture(t)
	e := newEngine(t, svc, Options{})
	revs, cancel := e.Subscribe()
	defer cancel()
	ctx := t.Context()
	req := Request{Subject: "bob@example.com", Actor: "reader-agent", Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.jira")}
	if d := e.Decide(ctx, req); d.Allowed || !strings.Contains(d.Reason, `subject "bob@example.com" lacks USE SCHEMA on SCHEMA eng.tools`) {
		t.Fatalf("before the grant: %+v", d)
	}
	grant := func(tx *catalog.Tx) error {
		if err := tx.Grant([]catalog.Privilege{catalog.PrivUseSchema}, catalog.TypeSchema, []string{"eng", "tools"}, []string{"tool-owners"}); err != nil {
			return err
		}
		return tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeSchema, []string{"eng", "tools"}, []string{"bob@example.com"})
	}
	revoke := func(tx *catalog.Tx) error {
		return tx.Revoke([]catalog.Privilege{catalog.PrivUseSchema}, catalog.TypeSchema, []string{"eng", "tools"}, []string{"tool-owners"})
	}
	for _, step := range []struct {
		name    string
		change  func(tx *catalog.Tx) error
		allowed bool
		reason  string
	}{
		{"grant", grant, true, `USE SCHEMA on SCHEMA eng.tools: USE SCHEMA granted to GROUP "tool-owners" (via "bob@example.com" → "tool-owners")`},
		{"revoke", revoke, false, `subject "bob@example.com" lacks USE SCHEMA on SCHEMA eng.tools`},
	} {
		t.Run(step.name, func(t *testing.T) {
			rev := write(t, svc, step.change)
			d, err := e.DecideAt(ctx, req, rev)
			if err != nil {
				t.Fatal(err)
			}
			if d.Revision < rev || d.Allowed != step.allowed || !strings.Contains(d.Reason, step.reason) {
				t.Fatalf("at revision %d: %+v; want allowed=%v and %q", rev, d, step.allowed, step.reason)
			}
			if ok, r := e.Allowed(ctx, req); ok != step.allowed || r < rev {
				t.Fatalf("Allowed = %v at %d", ok, r)
			}
			for got := catalog.Revision(0); got < rev; {
				select {
				case got = <-revs:
				case <-ctx.Done():
					t.Fatalf("no snapshot revision %d reported", rev)
				}
			}
		})
	}
}

func TestDecideAtStale(t *testing.T) {
	svc := fixture(t)
	req := Request{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.jira")}
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func(t *testing.T) context.Context
		also    error
	}{
		{"wait timeout", 20 * time.Millisecond, func(t *testing.T) context.Context { return t.Context() }, nil},
		{"context canceled", time.Hour, func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			return ctx
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, svc, Options{WaitTimeout: tc.timeout})
			want := e.Revision() + 1000
			d, err := e.DecideAt(tc.ctx(t), req, want)
			if !errors.Is(err, ErrStale) || (tc.also != nil && !errors.Is(err, tc.also)) {
				t.Fatalf("err = %v, want ErrStale (and %v)", err, tc.also)
			}
			if d.Allowed {
				t.Fatalf("a stale decision allows: %+v", d)
			}
			// A revision already there is answered at once.
			if d, err := e.DecideAt(tc.ctx(t), req, e.Revision()); tc.also == nil && (err != nil || !d.Allowed) {
				t.Fatalf("DecideAt(current) = %+v, %v", d, err)
			}
		})
	}
}

// TestPolicyHook: the hook is consulted only when the grants allow and a
// policy is attached to the securable or a container (here: schema
// eng.tools); such a decision is marked Contextual, the others are not.
func TestPolicyHook(t *testing.T) {
	svc := fixture(t)
	write(t, svc, func(tx *catalog.Tx) error {
		return tx.CreatePolicy("on_tools", catalog.TypeSchema, []string{"eng", "tools"}, "package p\ndeny contains msg if { false; msg := \"never\" }")
	})
	allowedReq := Request{Subject: "alice@example.com", Actor: "coding-agent", Privilege: catalog.PrivUseConnection,
		Securable: conn("eng.tools.jira"), Context: map[string]any{"tool": "create_issue"}}
	deniedReq := allowedReq
	deniedReq.Actor = "reader-agent"
	deniedReq.Subject = "carol@example.com"
	noPolicyReq := Request{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Securable: conn("my_github_mcp"),
		Context: map[string]any{"tool": "create_issue"}}
	objects := func(context.Context, *Snapshot, Request) ([]string, error) { return []string{"no"}, nil }
	tests := []struct {
		name       string
		hook       func(ctx context.Context, snap *Snapshot, req Request) ([]string, error)
		req        Request
		allowed    bool
		reason     string
		calls      int64
		contextual bool
	}{
		{"no objection", func(context.Context, *Snapshot, Request) ([]string, error) { return nil, nil },
			allowedReq, true, `subject "alice@example.com" allowed`, 1, true},
		{"denied by policy", func(_ context.Context, snap *Snapshot, req Request) ([]string, error) {
			if req.Context["tool"] == "create_issue" && snap.MemberOf(req.Subject, "analytics") {
				return []string{"analysts may not create issues", "outside business hours"}, nil
			}
			return nil, nil
		}, allowedReq, false, "denied by policy: analysts may not create issues; outside business hours", 1, true},
		{"failing policy fails closed", func(context.Context, *Snapshot, Request) ([]string, error) { return nil, errors.New("opa unavailable") },
			allowedReq, false, "policy evaluation failed: opa unavailable", 1, true},
		{"not consulted when the grants deny", func(context.Context, *Snapshot, Request) ([]string, error) { return nil, nil },
			deniedReq, false, `subject "carol@example.com" lacks USE SCHEMA`, 0, false},
		{"not consulted when no policy applies", objects, noPolicyReq, true, `subject "alice@example.com" allowed`, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			e := newEngine(t, svc, Options{Policy: func(ctx context.Context, snap *Snapshot, req Request) ([]string, error) {
				calls.Add(1)
				return tc.hook(ctx, snap, req)
			}})
			d := e.Decide(t.Context(), tc.req)
			if d.Allowed != tc.allowed || !strings.Contains(d.Reason, tc.reason) || d.Contextual != tc.contextual {
				t.Fatalf("%+v: want allowed=%v, contextual=%v and %q", d, tc.allowed, tc.contextual, tc.reason)
			}
			if ok, _ := e.Allowed(t.Context(), tc.req); ok != tc.allowed {
				t.Fatalf("Allowed = %v", ok)
			}
			if got := calls.Load(); got != 2*tc.calls {
				t.Fatalf("policy consulted %d times, want %d", got, 2*tc.calls)
			}
		})
	}
}

// TestConcurrentDecisions decides from several goroutines while the catalog
// changes (run with -race): each sees revisions only move forward, and the
// last change is reached.
func TestConcurrentDecisions(t *testing.T) {
	svc := fixture(t)
	e := newEngine(t, svc, Options{})
	req := Request{Subject: "bob@example.com", Privilege: catalog.PrivUseConnection, Securable: conn("eng.tools.jira")}
	var final atomic.Int64 // the last revision, once written
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var prev catalog.Revision
			for {
				d := e.Decide(t.Context(), req)
				if d.Revision < prev {
					errs <- fmt.Errorf("revision went from %d back to %d", prev, d.Revision)
					return
				}
				prev = d.Revision
				if f := catalog.Revision(final.Load()); f != 0 && prev >= f {
					return
				}
				if _, err := e.DecideAt(t.Context(), req, prev); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var last catalog.Revision
	for i := range 20 {
		last = write(t, svc, func(tx *catalog.Tx) error {
			privs := []catalog.Privilege{catalog.PrivUseSchema}
			if i%2 == 0 {
				return tx.Grant(privs, catalog.TypeSchema, []string{"eng", "tools"}, []string{"bob@example.com"})
			}
			return tx.Revoke(privs, catalog.TypeSchema, []string{"eng", "tools"}, []string{"bob@example.com"})
		})
	}
	final.Store(int64(last))
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if d, err := e.DecideAt(t.Context(), req, last); err != nil || d.Allowed {
		t.Fatalf("after the last revoke: %+v, %v", d, err)
	}
}

func TestNewEngineCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := NewEngine(ctx, fixture(t), Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}
