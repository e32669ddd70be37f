package mcp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

func TestDeniedConnection(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	e.authz.setDeny(func(r enforce.Request) string {
		if r.Subject == "bob@example.com" {
			return "bob@example.com lacks USE_CONNECTION on CONNECTION system.ai.github"
		}
		return ""
	})
	// Through the SDK: the session cannot even start.
	_, err := e.connect("bob-token", "github", connectOpts{})
	if err == nil || !strings.Contains(err.Error(), "lacks USE_CONNECTION") {
		t.Fatalf("connect as bob: %v", err)
	}
	// Raw: 403 with a JSON-RPC error carrying the reason.
	r := e.post("bob-token", "github", `{"jsonrpc":"2.0","id":"x1","method":"tools/list"}`, nil)
	code, msg, _ := r.rpcError()
	if r.status != http.StatusForbidden || code != CodeDenied || !strings.Contains(msg, "lacks USE_CONNECTION") {
		t.Fatalf("denied: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"id":"x1"`) {
		t.Fatalf("error lost the request id: %s", r.body)
	}
	if n := up.count("tools/list"); n != 0 {
		t.Fatalf("upstream saw %d tools/list", n)
	}
	evs := e.audit.all()
	last := evs[len(evs)-1]
	if last.Decision != "deny" || last.StatusCode != 403 || !strings.Contains(last.Reason, "lacks USE_CONNECTION") ||
		last.Action != "tools/list" || last.RequestID != "x1" || last.UserIdentity != "bob@example.com" {
		t.Fatalf("audit %+v", last)
	}

	// An authorizer error denies too (fail closed).
	e.authz.setDeny(nil)
	e.authz.err = errTest
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":2,"method":"ping"}`, nil)
	if code, _, _ := r.rpcError(); r.status != http.StatusForbidden || code != CodeDenied {
		t.Fatalf("authorizer error: %d %s", r.status, r.body)
	}

	// An unknown connection is 404.
	e.authz.err = nil
	r = e.post("alice-token", "nope", `{"jsonrpc":"2.0","id":3,"method":"ping"}`, nil)
	if code, msg, _ := r.rpcError(); r.status != http.StatusNotFound || code == 0 || !strings.Contains(msg, "does not exist") {
		t.Fatalf("unknown connection: %d %s", r.status, r.body)
	}
}

func TestHiddenToolLooksLikeMissingTool(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	e.conns.m["github"].Options[catalog.OptIncludeTools] = "echo,push*"
	cs := e.mustConnect("alice-token", "github", connectOpts{})
	ctx := ctxTimeout(t)
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolNames(lt); slices.Contains(got, "secret_tool") || slices.Contains(got, "delete_repo") || len(got) != 2 {
		t.Fatalf("tools %v", got)
	}
	calls := up.count("tools/call")
	_, errHidden := cs.CallTool(ctx, &sdk.CallToolParams{Name: "secret_tool", Arguments: map[string]any{}})
	if up.count("tools/call") != calls {
		t.Fatal("hidden tool call reached the upstream")
	}
	e.conns.m["github"].Options[catalog.OptIncludeTools] = "" // now the upstream answers for a missing one
	_, errMissing := cs.CallTool(ctx, &sdk.CallToolParams{Name: "no_such_tool", Arguments: map[string]any{}})
	if errHidden == nil || errMissing == nil {
		t.Fatalf("errors: %v / %v", errHidden, errMissing)
	}
	hidden := strings.ReplaceAll(errHidden.Error(), "secret_tool", "X")
	missing := strings.ReplaceAll(errMissing.Error(), "no_such_tool", "X")
	if hidden != missing {
		t.Fatalf("a hidden tool is distinguishable:\n hidden:  %s\n missing: %s", hidden, missing)
	}
	last := e.audit.all()[len(e.audit.all())-2]
	if last.Action != "tools/call" || last.Decision != "deny" || !strings.Contains(last.Reason, "include_tools") {
		t.Fatalf("audit of hidden call %+v", last)
	}
}

func TestPolicyToolDenial(t *testing.T) {
	for _, mode := range responseModes {
		t.Run(mode.name, func(t *testing.T) {
			up := newUpstream(t, mode.opts)
			e := newEnv(t, up.srv.URL)
			// Like the README's Rego policies: no repo deletions at all, and
			// no pushes to prod.
			e.authz.setDeny(func(r enforce.Request) string {
				if r.ContextMap()["tool"] == "delete_repo" {
					return "policy no_repo_deletes: deleting repositories is not allowed"
				}
				if args, ok := r.ContextMap()["arguments"].(map[string]any); ok && r.ContextMap()["tool"] == "push" && args["repo"] == "prod" {
					return "policy no_prod_push: pushing to prod is not allowed"
				}
				return ""
			})
			cs := e.mustConnect("alice-token", "github", connectOpts{})
			ctx := ctxTimeout(t)
			lt, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := toolNames(lt)
			slices.Sort(got)
			if want := []string{"echo", "push", "secret_tool"}; !slices.Equal(got, want) {
				t.Fatalf("tools %v, want %v", got, want)
			}
			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "delete_repo", Arguments: map[string]any{"repo": "x"}})
			if err == nil || !strings.Contains(err.Error(), "tool delete_repo is not available to you: policy no_repo_deletes: deleting repositories is not allowed") {
				t.Fatalf("delete_repo: %v", err)
			}
			_, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "push", Arguments: map[string]any{"repo": "prod"}})
			if err == nil || !strings.Contains(err.Error(), "pushing to prod is not allowed") {
				t.Fatalf("push prod: %v", err)
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "push", Arguments: map[string]any{"repo": "dev"}})
			if err != nil || textOf(res) != "pushed dev" {
				t.Fatalf("push dev: %v %v", res, err)
			}
			if n := up.count("tools/call"); n != 1 {
				t.Fatalf("upstream saw %d tools/call, want 1", n)
			}
			// The session survives denials.
			if _, err := cs.ListTools(ctx, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUnknownMethodDeniedNotForwarded(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	sid := e.initialize("alice-token", "github")
	before := len(up.methods)
	hdr := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	for _, m := range []string{"tasks/list", "sampling/createMessage", "admin/shutdown"} {
		r := e.post("alice-token", "github", `{"jsonrpc":"2.0","id":9,"method":"`+m+`","params":{}}`, hdr)
		code, msg, _ := r.rpcError()
		if r.status != 200 || code != CodeMethodNotFound || !strings.Contains(msg, "not allowed by the gateway") {
			t.Fatalf("%s: %d %s", m, r.status, r.body)
		}
		evs := e.audit.all()
		if ev := evs[len(evs)-1]; ev.Action != m || ev.Decision != "deny" || ev.RequestParams == "" {
			t.Fatalf("audit %+v", ev)
		}
	}
	// A notification with an unknown method is refused with 400.
	r := e.post("alice-token", "github", `{"jsonrpc":"2.0","method":"weird/thing"}`, hdr)
	if code, _, _ := r.rpcError(); r.status != 400 || code != CodeMethodNotFound {
		t.Fatalf("notification: %d %s", r.status, r.body)
	}
	if len(up.methods) != before {
		t.Fatalf("upstream saw %v", up.methods[before:])
	}
}

func TestSessionBoundToUser(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	sid := e.initialize("alice-token", "github")
	if len(sid) < 32 {
		t.Fatalf("session id %q", sid)
	}
	list := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
	hdr := func(s string) map[string]string {
		return map[string]string{"Mcp-Session-Id": s, "Mcp-Protocol-Version": "2025-11-25"}
	}
	if r := e.post("alice-token", "github", list, hdr(sid)); r.status != 200 {
		t.Fatalf("alice: %d %s", r.status, r.body)
	}
	_, _, _, sids := up.seen()
	upstreamSID := sids[len(sids)-1]
	if upstreamSID == "" || upstreamSID == sid {
		t.Fatalf("upstream session %q, gateway %q", upstreamSID, sid)
	}
	n := len(up.methods)
	for _, tc := range []struct {
		name, token, conn, sid string
		status                 int
	}{
		{"another user", "bob-token", "github", sid, 404},
		{"the agent alone", "agent-token", "github", sid, 404},
		{"another connection", "alice-token", "other", sid, 404},
		{"unknown id", "alice-token", "github", "nope", 404},
		{"the upstream's id", "alice-token", "github", upstreamSID, 404},
		{"missing id", "alice-token", "github", "", 400},
	} {
		r := e.post(tc.token, tc.conn, list, hdr(tc.sid))
		if r.status != tc.status {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	if len(up.methods) != n {
		t.Fatalf("refused requests reached the upstream: %v", up.methods[n:])
	}

	// Idle sessions expire.
	e.advance(DefaultSessionTTL + 1)
	if r := e.post("alice-token", "github", list, hdr(sid)); r.status != 404 {
		t.Fatalf("expired: %d %s", r.status, r.body)
	}
	if e.gw.Sessions() != 0 {
		t.Fatal("expired session kept")
	}
}

// TestSealedSessionsAcrossGateways: with one SessionKey, a session opened
// through one gateway (replica or node) is served by another, still bound
// to its subject, actor and connection; an id altered, sealed with another
// key, or older than SessionTTL is the same 404 as an unknown one; the
// upstream's id never shows in the gateway's.
func TestSealedSessionsAcrossGateways(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.SessionKey = k } }
	up := newUpstream(t, nil)
	a := newEnv(t, up.srv.URL, withKey(key))
	b := newEnv(t, up.srv.URL, withKey(key))
	other := newEnv(t, up.srv.URL, withKey(bytes.Repeat([]byte{8}, 32)))
	plain := newEnv(t, up.srv.URL)
	sid := a.initialize("alice-token", "github")
	_, _, _, sids := up.seen()
	upstreamSID := sids[len(sids)-1]
	if upstreamSID == "" || strings.Contains(sid, upstreamSID) {
		t.Fatalf("gateway session %q, upstream %q", sid, upstreamSID)
	}
	list := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
	hdr := func(s string) map[string]string {
		return map[string]string{"Mcp-Session-Id": s, "Mcp-Protocol-Version": "2025-11-25"}
	}
	if r := b.post("alice-token", "github", list, hdr(sid)); r.status != 200 || r.header.Get("Mcp-Session-Id") != sid {
		t.Fatalf("another gateway with the key: %d %q %s", r.status, r.header.Get("Mcp-Session-Id"), r.body)
	}
	if _, _, _, sids := up.seen(); sids[len(sids)-1] != upstreamSID {
		t.Fatalf("the upstream got session %q, want %q", sids[len(sids)-1], upstreamSID)
	}
	if b.gw.Sessions() != 1 {
		t.Fatalf("the other gateway holds %d sessions, want the one it took up", b.gw.Sessions())
	}
	tampered := []byte(sid)
	tampered[len(tampered)/2] ^= 1
	n := len(up.methods)
	for _, tc := range []struct {
		name, token, conn, sid string
		e                      *env
	}{
		{"another user", "bob-token", "github", sid, b},
		{"the agent alone", "agent-token", "github", sid, b},
		{"another connection", "alice-token", "other", sid, b},
		{"altered", "alice-token", "github", string(tampered), b},
		{"another key", "alice-token", "github", sid, other},
		{"no key", "alice-token", "github", sid, plain},
	} {
		if r := tc.e.post(tc.token, tc.conn, list, hdr(tc.sid)); r.status != 404 {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	if len(up.methods) != n {
		t.Fatalf("refused requests reached the upstream: %v", up.methods[n:])
	}
	// A gateway that does not hold it takes a session up only within
	// SessionTTL of its creation: an idle one never comes back.
	c := newEnv(t, up.srv.URL, withKey(key))
	c.advance(DefaultSessionTTL + time.Second)
	if r := c.post("alice-token", "github", list, hdr(sid)); r.status != 404 {
		t.Fatalf("older than SessionTTL: %d %s", r.status, r.body)
	}
}

func TestUnauthenticated(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	for _, tok := range []string{"", "forged"} {
		r := e.post(tok, "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
		www := r.header.Get("WWW-Authenticate")
		// RFC 6750 §3.1: a request without a token gets no error code.
		if r.status != 401 || !strings.HasPrefix(www, `Bearer resource_metadata="`+e.srv.URL+`/.well-known/oauth-protected-resource/mcp/github"`) ||
			strings.Contains(www, `error="`) != (tok != "") {
			t.Fatalf("token %q: %d %q %s", tok, r.status, www, r.body)
		}
		var body map[string]string
		if json.Unmarshal(r.body, &body) != nil || body["error"] == "" {
			t.Fatalf("body %s", r.body)
		}
	}
	// insufficient_scope is 403 with the scope.
	e.auth.err = &authError403
	r := e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	if www := r.header.Get("WWW-Authenticate"); r.status != 403 || !strings.Contains(www, `error="insufficient_scope"`) || !strings.Contains(www, `scope="mcp:tools"`) {
		t.Fatalf("403: %d %q", r.status, www)
	}
	// Any other error is a 401 too.
	e.auth.err = errTest
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "resource_metadata") {
		t.Fatalf("other error: %d", r.status)
	}
	if len(up.methods) != 0 {
		t.Fatal("unauthenticated requests reached the upstream")
	}
	for _, ev := range e.audit.all() {
		if ev.Decision != "deny" || ev.UserIdentity != "" {
			t.Fatalf("audit %+v", ev)
		}
	}

	// RFC 9728 metadata.
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/.well-known/oauth-protected-resource/mcp/github", nil)
	m := e.do(req)
	var md map[string]any
	if m.status != 200 || json.Unmarshal(m.body, &md) != nil || md["resource"] != e.srv.URL+"/mcp/github" ||
		md["authorization_servers"].([]any)[0] != "https://idp.example" || md["bearer_methods_supported"].([]any)[0] != "header" {
		t.Fatalf("metadata %d %s", m.status, m.body)
	}
}

func TestSignInRequired(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL)
	const signIn = "http://gw.example/connect/system.ai.github?state=abc"
	e.creds.set("", &signInErr)
	// A client without URL elicitation gets the URL in the message and data.
	r := e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, nil)
	code, msg, data := r.rpcError()
	var d map[string]any
	_ = json.Unmarshal(data, &d)
	if r.status != 200 || code != CodeSignInRequired || !strings.Contains(msg, signIn) || d["signInUrl"] != signIn {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}

	// A session whose client declared elicitation.url gets -32042.
	e.creds.set(upstreamCredential, nil)
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}},"clientInfo":{"name":"x","version":"1"}}}`,
		map[string]string{"Mcp-Protocol-Version": "2025-11-25"})
	sid := r.header.Get("Mcp-Session-Id")
	if r.status != 200 || sid == "" {
		t.Fatalf("initialize %d", r.status)
	}
	e.creds.set("", &signInErr)
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`,
		map[string]string{"Mcp-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid})
	code, _, data = r.rpcError()
	var el struct {
		Elicitations []map[string]string `json:"elicitations"`
	}
	_ = json.Unmarshal(data, &el)
	if r.status != 200 || code != CodeURLElicitationRequired || len(el.Elicitations) != 1 || el.Elicitations[0]["mode"] != "url" ||
		el.Elicitations[0]["url"] != signIn || el.Elicitations[0]["elicitationId"] == "" || el.Elicitations[0]["message"] == "" {
		t.Fatalf("elicitation: %d %s", r.status, r.body)
	}
}
