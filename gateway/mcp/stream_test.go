package mcp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// statefulRaw is a hand-written stateful upstream: initialize hands out
// session "up-1"; GET streams one tools/list result (as a resumed stream
// would) and echoes the Last-Event-ID it got.
func statefulRaw(t *testing.T, lastEventID *string, mu *sync.Mutex) string {
	return rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			if !strings.Contains(string(b), `"id"`) {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Mcp-Session-Id", "up-1")
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"1"}}}`)
		case http.MethodGet:
			if r.Header.Get("Mcp-Session-Id") != "up-1" {
				http.Error(w, "session not found", 404)
				return
			}
			mu.Lock()
			*lastEventID = r.Header.Get("Last-Event-ID")
			mu.Unlock()
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "id: s1_5\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":[{\"name\":\"echo\"},{\"name\":\"secret_tool\"}],\"nextCursor\":\"c2\"}}\n\n")
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		}
	}).URL
}

func TestGETResumptionAndFiltering(t *testing.T) {
	var mu sync.Mutex
	var lastEventID string
	e := newEnv(t, statefulRaw(t, &lastEventID, &mu))
	e.conns.m["github"].Options[catalog.OptIncludeTools] = "echo"
	sid := e.initialize("alice-token", "github")
	req, _ := http.NewRequest(http.MethodGet, e.url("github"), nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	req.Header.Set("Last-Event-ID", "s1_4")
	r := e.do(req)
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" || r.header.Get("Mcp-Session-Id") != sid {
		t.Fatalf("GET: %d %v %s", r.status, r.header, r.body)
	}
	mu.Lock()
	got := lastEventID
	mu.Unlock()
	if got != "s1_4" {
		t.Fatalf("upstream got Last-Event-ID %q", got)
	}
	body := string(r.body)
	if !strings.Contains(body, `"name":"echo"`) || strings.Contains(body, "secret_tool") ||
		!strings.Contains(body, `"nextCursor":"c2"`) || !strings.Contains(body, "id: s1_5\n") {
		t.Fatalf("stream %q", body)
	}
	evs := e.audit.all()
	if ev := evs[len(evs)-1]; ev.Action != "GET" || ev.Decision != "allow" || ev.SessionID != sid || ev.StatusCode != 200 {
		t.Fatalf("GET audit %+v", ev)
	}

	// DELETE ends the session: audited, forwarded with the upstream's id,
	// gone at the gateway.
	req, _ = http.NewRequest(http.MethodDelete, e.url("github"), nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Mcp-Session-Id", sid)
	if r := e.do(req); r.status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	evs = e.audit.all()
	if ev := evs[len(evs)-1]; ev.Action != "DELETE" || ev.SessionID != sid || ev.StatusCode != 204 {
		t.Fatalf("DELETE audit %+v", ev)
	}
	if e.gw.Sessions() != 0 {
		t.Fatal("session kept after DELETE")
	}
	if r := e.do(req); r.status != 404 {
		t.Fatalf("DELETE again: %d", r.status)
	}
}

// batchAuthz counts AuthorizeBatch calls.
type batchAuthz struct {
	fakeAuthz
	mu      sync.Mutex
	batches int
	fail    bool
}

func (b *batchAuthz) AuthorizeBatch(ctx context.Context, reqs []enforce.Request) ([]enforce.Decision, error) {
	b.mu.Lock()
	b.batches++
	fail := b.fail
	b.mu.Unlock()
	out := make([]enforce.Decision, len(reqs))
	if fail {
		return out, errTest
	}
	for i, r := range reqs {
		out[i], _ = b.Authorize(ctx, r)
	}
	return out, nil
}

func TestToolsListBatchedAndCached(t *testing.T) {
	up := newUpstream(t, &sdk.StreamableHTTPOptions{JSONResponse: true})
	ba := &batchAuthz{}
	ba.setDeny(func(r enforce.Request) string {
		if r.ContextMap()["tool"] == "delete_repo" {
			return "no deletes"
		}
		return ""
	})
	e := newEnv(t, up.srv.URL, func(c *Config) { c.Authz = ba })
	cs := e.mustConnect("alice-token", "github", connectOpts{})
	ctx := ctxTimeout(t)
	list := func() []string {
		t.Helper()
		lt, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		names := toolNames(lt)
		slices.Sort(names)
		return names
	}
	if got := list(); !slices.Equal(got, []string{"echo", "push", "secret_tool"}) {
		t.Fatalf("tools %v", got)
	}
	if ba.batches != 1 {
		t.Fatalf("%d batches", ba.batches)
	}
	// The second listing is answered from the cache (same revision).
	n := len(ba.requests())
	list()
	if ba.batches != 1 || len(ba.requests()) != n+1 { // only the connection check
		t.Fatalf("not cached: %d batches, %d questions", ba.batches, len(ba.requests())-n)
	}
	// A new catalog revision asks again; an authorizer failure hides every
	// tool and is not remembered.
	e.conns.m["github"].Revision = 8
	ba.fail = true
	if got := list(); len(got) != 0 {
		t.Fatalf("tools shown without a decision: %v", got)
	}
	ba.fail = false
	if got := list(); len(got) != 3 {
		t.Fatalf("failure was cached: %v", got)
	}
}
