package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/internal/sse"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// fuzzUpstream answers every request with one response, set per run.
type fuzzUpstream struct {
	mu     sync.Mutex
	ctype  string
	body   []byte
	status int
}

func (u *fuzzUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h := http.Header{"Content-Type": {u.ctype}}
	return &http.Response{StatusCode: u.status, Header: h, Body: io.NopCloser(bytes.NewReader(u.body)),
		ContentLength: int64(len(u.body)), Request: r}, nil
}

// seenGuard allows every call and records every answer piece it is shown
// (optionally rewriting each, as a redacting guard would): the pieces a
// client may get as messages.
type seenGuard struct {
	mu      sync.Mutex
	seen    map[string]bool
	rewrite bool
}

func (g *seenGuard) Call(context.Context, *pipeline.Call, *pipeline.Content) (pipeline.Verdict, error) {
	return pipeline.Verdict{Action: pipeline.Allow}, nil
}

func (g *seenGuard) Result(context.Context, *pipeline.Call) (pipeline.ResultGuard, error) {
	return g, nil
}

func (g *seenGuard) Piece(_ context.Context, _ *pipeline.Call, out *pipeline.Content) (pipeline.Verdict, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rewrite {
		body := append(append([]byte(`{"rewritten":`), out.Body...), '}')
		g.seen[string(body)] = true
		return pipeline.Verdict{Action: pipeline.Rewrite, Body: body}, nil
	}
	g.seen[string(out.Body)] = true
	return pipeline.Verdict{Action: pipeline.Allow}, nil
}

// nopAudit records nothing (a fuzz run makes millions of calls).
type nopAudit struct{}

func (nopAudit) Record(context.Context, catalog.AuditEvent) error { return nil }
func (nopAudit) Enqueue(context.Context, catalog.AuditEvent) (*catalog.AuditAck, error) {
	return catalog.DoneAuditAck(nil), nil
}
func (nopAudit) Submit(context.Context, catalog.AuditEvent) error { return nil }

// relayModes: the client's message × the upstream's Content-Type.
var relayModes = []struct {
	name, body, ctype string
}{
	{"tools/call json", callBody, "application/json"},
	{"tools/call sse", callBody, "text/event-stream"},
	{"tools/list json", `{"jsonrpc":"2.0","id":"l","method":"tools/list"}`, "application/json"},
	{"tools/list sse", `{"jsonrpc":"2.0","id":"l","method":"tools/list"}`, "text/event-stream"},
}

// FuzzRelay: an upstream's answer, any bytes, as a JSON body and as an
// SSE stream, to a tools/call and to a tools/list (whose result the
// gateway filters), with a result guard that allows or rewrites. Nothing
// panics; an answer the gateway makes (an error) is a JSON-RPC response
// to the request's id; a JSON answer is the upstream's body as is (a
// framed object: the relay reads it whole but does not validate every
// byte) or, filtered, valid JSON; a stream reads back event by event, and
// every message a client reads in it, wherever it lands in the stream,
// is one the result guard was shown.
func FuzzRelay(f *testing.F) {
	up := &fuzzUpstream{}
	guard := &seenGuard{seen: map[string]bool{}}
	e := newEnv(f, "http://upstream.invalid/mcp", func(c *Config) {
		c.Upstream = &http.Client{Transport: up}
		c.Guard = guard
		c.Audit = nopAudit{}
		c.MaxResponseBody = 64 << 10
	})
	e.conns.m["github"].Options[catalog.OptIncludeTools] = "echo,search"
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}]}}`,
		`{"jsonrpc":"2.0","id":"l","result":{"tools":[{"name":"echo"},{"name":"secret"}],"nextCursor":"c"}}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"no"}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"isError":true}}`,
		`{x}`,
		"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
			"id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n",
		": prime\n\nevent: other\ndata: x\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"l\",\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\n\n",
		"\n\xef\xbb\xbfdata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"hidden\":1}}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\r\rdata: {}\n\n",
		"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n",
	} {
		for m := range relayModes {
			f.Add(uint8(m), []byte(s))
			f.Add(uint8(m+len(relayModes)), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, mode uint8, answer []byte) {
		m := relayModes[int(mode)%len(relayModes)]
		up.mu.Lock()
		up.ctype, up.body, up.status = m.ctype, answer, http.StatusOK
		up.mu.Unlock()
		guard.mu.Lock()
		guard.seen, guard.rewrite = map[string]bool{}, int(mode)/len(relayModes)%2 == 1
		guard.mu.Unlock()

		req := httptest.NewRequest(http.MethodPost, e.url("github"), strings.NewReader(m.body))
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		w := httptest.NewRecorder()
		e.gw.ServeHTTP(w, req)
		out := w.Body.Bytes()

		guard.mu.Lock()
		defer guard.mu.Unlock()
		ct := w.Header().Get("Content-Type")
		switch {
		case strings.HasPrefix(ct, "text/event-stream"):
			checkRelayedStream(t, m.name, answer, out, guard.seen)
		case w.Code != http.StatusOK:
			var rpc struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out, &rpc); err != nil || rpc.JSONRPC != "2.0" || rpc.Error == nil || rpc.Error.Message == "" {
				t.Fatalf("%s: %d %q for %q: not a JSON-RPC error (%v)", m.name, w.Code, out, answer, err)
			}
		case strings.Contains(m.name, "tools/list") && !guard.rewrite:
			if !json.Valid(out) || !guard.seen[string(out)] {
				t.Fatalf("%s: filtered answer %q for %q", m.name, out, answer)
			}
		default:
			if !guard.seen[string(out)] {
				t.Fatalf("%s: the client got %q, which the guard was not shown", m.name, out)
			}
		}
	})
}

// checkRelayedStream checks a relayed stream: it reads back; every event
// with data, read alone (as a client reads the first event of its
// stream) and in the stream, is a message the guard was shown, or an
// upstream event of another type relayed as received.
func checkRelayedStream(t *testing.T, what string, answer, out []byte, seen map[string]bool) {
	t.Helper()
	rd := sse.NewReader(bytes.NewReader(out), 1<<30)
	defer rd.Release()
	for {
		err := rd.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("%s: the client's stream %q (from %q) does not read back: %v", what, out, answer, err)
		}
		alone := sse.NewReader(bytes.NewReader(rd.Raw), 1<<30)
		err = alone.Next()
		if err != nil || alone.HasData != rd.HasData || !bytes.Equal(alone.Data, rd.Data) || !bytes.Equal(alone.Name, rd.Name) {
			t.Fatalf("%s: event %q reads otherwise alone (%v)", what, rd.Raw, err)
		}
		alone.Release()
		if !rd.HasData || len(rd.Data) == 0 {
			continue
		}
		if isMessage(rd) && !seen[string(rd.Data)] {
			var rpc struct {
				JSONRPC string `json:"jsonrpc"`
				Error   *struct {
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(rd.Data, &rpc) != nil || rpc.JSONRPC != "2.0" || rpc.Error == nil {
				t.Fatalf("%s: the client reads message %q, which the guard was not shown (stream %q)", what, rd.Data, answer)
			}
		}
	}
}
