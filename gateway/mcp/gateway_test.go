package mcp

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// The upstream answers in both Streamable HTTP response modes: SSE (the
// SDK's default) and application/json.
var responseModes = []struct {
	name string
	opts *sdk.StreamableHTTPOptions
}{
	{"sse", nil},
	{"json", &sdk.StreamableHTTPOptions{JSONResponse: true}},
}

func TestListAndCallThroughGateway(t *testing.T) {
	for _, mode := range responseModes {
		t.Run(mode.name, func(t *testing.T) {
			up := newUpstream(t, mode.opts)
			e := newEnv(t, up.srv.URL)
			e.conns.m["github"].Options[catalog.OptIncludeTools] = "echo, delete_*, push"
			cs := e.mustConnect("alice-token", "github", connectOpts{})
			ctx := ctxTimeout(t)

			lt, err := cs.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := toolNames(lt)
			slices.Sort(got)
			if want := []string{"delete_repo", "echo", "push"}; !slices.Equal(got, want) {
				t.Fatalf("tools = %v, want %v", got, want)
			}
			res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil {
				t.Fatal(err)
			}
			if txt := textOf(res); txt != "echo: hi" {
				t.Fatalf("result %q", txt)
			}

			// The upstream saw the gateway's credential, never the agent's
			// token or cookie, and the upstream's own session id.
			auths, cookies, methods, sids := up.seen()
			for i := range auths {
				if auths[i] != upstreamCredential {
					t.Errorf("upstream request %d (%s) had Authorization %q", i, methods[i], auths[i])
				}
				if cookies[i] != "" {
					t.Errorf("upstream request %d got a cookie %q", i, cookies[i])
				}
			}
			gwSID := cs.ID()
			if gwSID == "" {
				t.Fatal("no gateway session id")
			}
			for i, s := range sids {
				if s == gwSID {
					t.Errorf("upstream request %d carried the gateway's session id", i)
				}
			}

			// One audit record per message.
			want := []string{"server/discover", "initialize", "notifications/initialized", "tools/list", "tools/call"}
			if got := e.audit.actions(); !slices.Equal(got, want) {
				t.Fatalf("audited %v, want %v", got, want)
			}
			ev := e.audit.all()[4]
			if ev.Service != "mcp" || ev.UserIdentity != "alice@example.com" || ev.RunBy != "alice@example.com" ||
				ev.RunAs != "coding-agent" || ev.SecurableType != "CONNECTION" || ev.SecurableName != "system.ai.github" ||
				ev.Decision != "allow" || ev.StatusCode != 200 || ev.SessionID != gwSID || ev.RequestID == "" ||
				ev.SourceIP != "127.0.0.1" || ev.EventID == "" || ev.Time.IsZero() || ev.LatencyMs <= 0 {
				t.Fatalf("tools/call audit event: %+v", ev)
			}
			var p map[string]any
			if err := json.Unmarshal([]byte(ev.RequestParams), &p); err != nil {
				t.Fatal(err)
			}
			if p["tool"] != "echo" || p["arguments_bytes"].(float64) != float64(len(`{"text":"hi"}`)) ||
				p["upstream_status"].(float64) != 200 || p["bytes_in"].(float64) == 0 || p["bytes_out"].(float64) == 0 ||
				len(p["trace_id"].(string)) != 32 {
				t.Fatalf("request params %s", ev.RequestParams)
			}
			if strings.Contains(ev.RequestParams, "hi") {
				t.Fatalf("argument values in the audit: %s", ev.RequestParams)
			}

			// The authorization questions carried the call's context.
			var sawTool bool
			for _, r := range e.authz.requests() {
				if r.Subject != "alice@example.com" || r.Actor != "coding-agent" || r.Privilege != catalog.PrivUseConnection ||
					r.Securable != (enforce.SecurableRef{Type: catalog.TypeConnection, Name: "system.ai.github"}) {
					t.Fatalf("authz request %+v", r)
				}
				// Built only when asked for (no policy here), and then the
				// map the gateway used to build for every message.
				if r.Context != nil || r.LazyContext == nil {
					t.Fatalf("authz request with a built context %v or no builder", r.Context)
				}
				rc := r.ContextMap()
				if rc["method"] == "tools/call" && rc["arguments"] != nil {
					sawTool = true
					want := map[string]any{"method": "tools/call", "tool": "echo", "arguments": map[string]any{"text": "hi"},
						"source_ip": "127.0.0.1", "session_id": gwSID, "user_agent": rc["user_agent"]}
					if ua, _ := rc["user_agent"].(string); ua == "" || !reflect.DeepEqual(rc, want) {
						t.Fatalf("tools/call context %#v", rc)
					}
				}
			}
			if !sawTool {
				t.Fatal("no tools/call authorization with arguments")
			}

			// DELETE ends the session at the gateway (and upstream).
			if err := cs.Close(); err != nil {
				t.Fatal(err)
			}
			if n := e.gw.Sessions(); n != 0 {
				t.Fatalf("%d sessions after close", n)
			}
			if up.count("DELETE") != 1 {
				t.Fatalf("upstream saw %d DELETEs", up.count("DELETE"))
			}
		})
	}
}
