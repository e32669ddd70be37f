package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
)

const token = "0123456789abcdef0123456789abcdef"

var grantAlice = apitest.Key{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Type: catalog.TypeConnection, Name: "my_github_mcp"}

// newServer starts the API over d on loopback. d starts at revision 2 with
// alice's grant (revision 3) unless the caller changed it.
func newServer(t *testing.T, d enforce.Decider, opts api.Options) *httptest.Server {
	t.Helper()
	if opts.Token == "" {
		opts.Token = token
	}
	srv := httptest.NewServer(api.NewHandler(d, opts))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

func newFake() *apitest.Decider {
	d := apitest.New(2)
	d.Grant(grantAlice)
	return d
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json (body %s)", ct, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, r.body)
	}
}

func (r response) errorText(t *testing.T) string {
	t.Helper()
	var e api.ErrorResponse
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error answer without error text: %s", r.body)
	}
	return e.Error
}

// call sends one request; auth "" sends no Authorization header.
func call(t *testing.T, srv *httptest.Server, method, path, auth string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func authorize(t *testing.T, srv *httptest.Server, body string) response {
	t.Helper()
	return call(t, srv, http.MethodPost, api.AuthorizePath, "Bearer "+token, strings.NewReader(body))
}

func TestAuthentication(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{})
	cases := []struct {
		name, method, path, auth string
		status                   int
		challenge                string // expected WWW-Authenticate
	}{
		{"no header", "GET", api.RevisionPath, "", 401, `Bearer realm="mandate"`},
		{"wrong token", "GET", api.RevisionPath, "Bearer wrong", 401, `Bearer realm="mandate", error="invalid_token"`},
		{"prefix of the token", "GET", api.RevisionPath, "Bearer " + token[:len(token)-1], 401, `Bearer realm="mandate", error="invalid_token"`},
		{"token with a suffix", "GET", api.RevisionPath, "Bearer " + token + "0", 401, `Bearer realm="mandate", error="invalid_token"`},
		{"empty bearer", "GET", api.RevisionPath, "Bearer ", 401, `Bearer realm="mandate", error="invalid_token"`},
		{"basic scheme", "GET", api.RevisionPath, "Basic " + token, 401, `Bearer realm="mandate", error="invalid_token"`},
		{"token without scheme", "GET", api.RevisionPath, token, 401, `Bearer realm="mandate", error="invalid_token"`},
		{"authorize without token", "POST", api.AuthorizePath, "", 401, `Bearer realm="mandate"`},
		{"watch without token", "GET", api.WatchPath, "", 401, `Bearer realm="mandate"`},
		{"unknown path without token", "GET", "/api/v1/nothing", "", 401, `Bearer realm="mandate"`},
		{"root without token", "GET", "/", "", 401, `Bearer realm="mandate"`},
		{"right token", "GET", api.RevisionPath, "Bearer " + token, 200, ""},
		{"scheme in lower case", "GET", api.RevisionPath, "bearer " + token, 200, ""},
		{"unknown path with token", "GET", "/api/v1/nothing", "Bearer " + token, 404, ""},
		{"root with token", "GET", "/", "Bearer " + token, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, srv, c.method, c.path, c.auth, nil)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != c.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, c.challenge)
			}
			if c.status != 200 {
				r.errorText(t)
			}
		})
	}
}

func TestNoTokenConfiguredRefusesAll(t *testing.T) {
	srv := httptest.NewServer(api.NewHandler(newFake(), api.Options{}))
	t.Cleanup(srv.Close)
	for _, auth := range []string{"", "Bearer ", "Bearer  ", "Bearer x"} {
		t.Run(fmt.Sprintf("%q", auth), func(t *testing.T) {
			if r := call(t, srv, "GET", api.RevisionPath, auth, nil); r.status != 401 {
				t.Fatalf("status %d with no token configured, want 401", r.status)
			}
		})
	}
}

func TestFallbackIsAuthenticated(t *testing.T) {
	fb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fallback") })
	srv := newServer(t, newFake(), api.Options{Fallback: fb})
	cases := []struct {
		name, path, auth string
		status           int
		body             string
	}{
		{"healthz with token", "/healthz", "Bearer " + token, 200, "fallback"},
		{"healthz without token", "/healthz", "", 401, ""},
		{"api path is not delegated", "/api/v2/x", "Bearer " + token, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, srv, "GET", c.path, c.auth, nil)
			if r.status != c.status || (c.body != "" && string(r.body) != c.body) {
				t.Fatalf("status %d body %q, want %d %q", r.status, r.body, c.status, c.body)
			}
		})
	}
}

func TestMethods(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{})
	cases := []struct{ method, path, allow string }{
		{"GET", api.AuthorizePath, "POST"},
		{"PUT", api.AuthorizePath, "POST"},
		{"POST", api.WatchPath, "GET"},
		{"DELETE", api.RevisionPath, "GET"},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := call(t, srv, c.method, c.path, "Bearer "+token, nil)
			if r.status != 405 || r.header.Get("Allow") != c.allow {
				t.Fatalf("status %d Allow %q, want 405 %q", r.status, r.header.Get("Allow"), c.allow)
			}
			r.errorText(t)
		})
	}
}

func TestAuthorizeMalformed(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{})
	cases := []struct{ name, body, want string }{
		{"bad JSON", `{"subject": `, "truncated JSON"},
		{"not JSON", `subject=alice`, "invalid JSON"},
		{"empty body", ``, "empty body"},
		{"array", `[]`, "the request must be an object, not array"},
		{"trailing data", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}} {}`, "unexpected data"},
		{"unknown field", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"},"at_least_revison":3}`, `unknown field "at_least_revison"`},
		{"subject is a number", `{"subject":7,"privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}}`, "subject must be a string, not number"},
		{"missing subject", `{"privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}}`, "subject is required"},
		{"missing privilege", `{"subject":"a","securable":{"type":"CONNECTION","name":"c"}}`, "privilege is required"},
		{"unknown privilege", `{"subject":"a","privilege":"FLY","securable":{"type":"CONNECTION","name":"c"}}`, `unknown privilege "FLY"`},
		{"missing type", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"name":"c"}}`, "securable.type is required"},
		{"unknown type", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"VOLUME","name":"c"}}`, `unknown securable type "VOLUME"`},
		{"missing name", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION"}}`, "securable.name is required"},
		{"negative revision", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"},"at_least_revision":-1}`, "must not be negative"},
		{"context not an object", `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"},"context":[1]}`, "context must be an object, not array"},
		{"bad check in a batch", `{"checks":[{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}},{"subject":"a","privilege":"NOPE","securable":{"type":"CONNECTION","name":"c"}}]}`, `checks[1]: unknown privilege "NOPE"`},
		{"single and batch", `{"subject":"a","checks":[]}`, "not both"},
		{"empty object", `{}`, "subject is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := authorize(t, srv, c.body)
			if r.status != 400 {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			if msg := r.errorText(t); !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not say %q", msg, c.want)
			}
		})
	}
}

func TestAuthorizeAnswers(t *testing.T) {
	d := newFake()
	srv := newServer(t, d, api.Options{})
	cases := []struct {
		name, body string
		allowed    bool
		reason     string
		steps      bool
	}{
		{"granted", `{"subject":"alice@example.com","actor":"coding-agent","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"tool":"x"}}`, true, "granted", false},
		{"SQL spelling and lower case", `{"subject":"alice@example.com","privilege":"use connection","securable":{"type":"connection","name":"my_github_mcp"}}`, true, "granted", false},
		{"explain", `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"explain":true}`, true, "granted", true},
		{"unknown principal is a denial", `{"subject":"mallory","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"}}`, false, `"mallory" lacks`, false},
		{"unknown securable is a denial", `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"nope"}}`, false, "lacks", false},
		{"satisfied at_least_revision", `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"at_least_revision":3}`, true, "granted", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := authorize(t, srv, c.body)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			var dec enforce.Decision
			r.json(t, &dec)
			if dec.Allowed != c.allowed || !strings.Contains(dec.Reason, c.reason) || dec.Revision != d.Revision() {
				t.Fatalf("answer %+v, want allowed=%v reason ~%q revision %d", dec, c.allowed, c.reason, d.Revision())
			}
			if (len(dec.Steps) > 0) != c.steps {
				t.Fatalf("steps %v, want steps: %v", dec.Steps, c.steps)
			}
		})
	}
}

func TestAuthorizeBatchKeepsOrder(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{})
	var checks []string
	var want []bool
	for i := range 50 {
		subj, ok := "mallory", false
		if i%3 == 0 {
			subj, ok = "alice@example.com", true
		}
		checks = append(checks, fmt.Sprintf(`{"subject":%q,"privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"i":%d}}`, subj, i))
		want = append(want, ok)
	}
	r := authorize(t, srv, `{"checks":[`+strings.Join(checks, ",")+`]}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var res api.BatchResponse
	r.json(t, &res)
	if len(res.Results) != len(want) {
		t.Fatalf("%d results for %d checks", len(res.Results), len(want))
	}
	for i, d := range res.Results {
		if d.Allowed != want[i] || d.Reason == "" || d.Revision != 3 {
			t.Errorf("result %d: %+v, want allowed=%v at revision 3", i, d, want[i])
		}
	}
	t.Run("empty batch", func(t *testing.T) {
		r := authorize(t, srv, `{"checks":[]}`)
		var res api.BatchResponse
		r.json(t, &res)
		if r.status != 200 || res.Results == nil || len(res.Results) != 0 {
			t.Fatalf("status %d body %s, want 200 with empty results", r.status, r.body)
		}
	})
}

// unsized hides the length of a body so that it is sent chunked.
type unsized struct{ io.Reader }

func TestTooLarge(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{MaxBody: 512, MaxBatch: 3})
	check := `{"subject":"a","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}}`
	big := `{"subject":"` + strings.Repeat("a", 600) + `","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"c"}}`
	cases := []struct {
		name string
		body io.Reader
		want string
	}{
		{"with Content-Length", strings.NewReader(big), "larger than the limit of 512 bytes"},
		{"chunked", unsized{strings.NewReader(big)}, "larger than the limit of 512 bytes"},
		{"whitespace after the object", unsized{strings.NewReader(check + strings.Repeat(" ", 600))}, "larger than the limit"},
		{"batch over MaxBatch", strings.NewReader(`{"checks":[` + strings.Join([]string{check, check, check, check}, ",") + `]}`), "batch of 4 checks"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := call(t, srv, "POST", api.AuthorizePath, "Bearer "+token, c.body)
			if r.status != 413 {
				t.Fatalf("status %d, want 413: %s", r.status, r.body)
			}
			if msg := r.errorText(t); !strings.Contains(msg, c.want) {
				t.Fatalf("error %q does not say %q", msg, c.want)
			}
		})
	}
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

func TestAtLeastRevision(t *testing.T) {
	const check = `"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"}`
	t.Run("waits for the revision", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{MaxWait: 10 * time.Second})
		calls := d.Calls()
		done := make(chan response, 1)
		go func() { done <- authorize(t, srv, `{`+check+`,"at_least_revision":4}`) }()
		waitFor(t, "the request to wait in DecideAt", func() bool { return d.Calls() > calls })
		select {
		case r := <-done:
			t.Fatalf("answered before revision 4 existed: %d %s", r.status, r.body)
		default:
		}
		d.Bump()
		r := <-done
		var dec enforce.Decision
		r.json(t, &dec)
		if r.status != 200 || !dec.Allowed || dec.Revision != 4 {
			t.Fatalf("status %d answer %+v, want allowed at revision 4", r.status, dec)
		}
	})
	cases := []struct{ name, body string }{
		{"single", `{` + check + `,"at_least_revision":9}`},
		{"batch, top level", `{"checks":[{` + check + `},{` + check + `}],"at_least_revision":9}`},
		{"batch, one check", `{"checks":[{` + check + `},{` + check + `,"at_least_revision":9}]}`},
	}
	for _, c := range cases {
		t.Run("fails closed: "+c.name, func(t *testing.T) {
			d := newFake()
			srv := newServer(t, d, api.Options{MaxWait: 30 * time.Millisecond})
			r := authorize(t, srv, c.body)
			if r.status != 503 || r.header.Get("Retry-After") == "" {
				t.Fatalf("status %d Retry-After %q, want 503 with Retry-After: %s", r.status, r.header.Get("Retry-After"), r.body)
			}
			var e api.ErrorResponse
			r.json(t, &e)
			if !strings.Contains(e.Error, "revision 9 is not available") || e.Revision != 3 {
				t.Fatalf("error %+v, want revision 9 unavailable, newest 3", e)
			}
			if strings.Contains(string(r.body), "allowed") {
				t.Fatalf("a 503 carries an answer: %s", r.body)
			}
		})
	}
}

func TestRevision(t *testing.T) {
	d := newFake()
	srv := newServer(t, d, api.Options{})
	for _, want := range []catalog.Revision{3, 4} {
		t.Run(fmt.Sprint(want), func(t *testing.T) {
			if d.Revision() < want {
				d.Bump()
			}
			var ev api.RevisionEvent
			r := call(t, srv, "GET", api.RevisionPath, "Bearer "+token, nil)
			r.json(t, &ev)
			if r.status != 200 || ev.Revision != want {
				t.Fatalf("status %d revision %d, want %d", r.status, ev.Revision, want)
			}
		})
	}
}

// stream is an open watch: its lines arrive on lines.
type stream struct {
	resp   *http.Response
	lines  chan string
	cancel context.CancelFunc
}

func openWatch(t *testing.T, srv *httptest.Server, query string, hdr http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+api.WatchPath+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{resp: resp, lines: make(chan string, 64), cancel: cancel}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// next returns the next line of the stream.
func (s *stream) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-s.lines:
		if !ok {
			t.Fatal("watch stream ended")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no watch line within 5 s")
	}
	return ""
}

// expect reads the next lines and compares them.
func (s *stream) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := s.next(t); got != w {
			t.Fatalf("watch line %q, want %q", got, w)
		}
	}
}

func event(rev int) []string {
	return []string{fmt.Sprintf("id: %d", rev), "event: revision", fmt.Sprintf(`data: {"revision": %d}`, rev), ""}
}

func TestWatch(t *testing.T) {
	t.Run("sends the current revision when newer than since, then changes", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{})
		s := openWatch(t, srv, "?since=1", nil)
		if s.resp.StatusCode != 200 || s.resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d Content-Type %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
		}
		s.expect(t, event(3)...)
		d.Bump()
		s.expect(t, event(4)...)
		d.Revoke(grantAlice)
		s.expect(t, event(5)...)
	})
	t.Run("up to date: a comment, then changes", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{})
		s := openWatch(t, srv, "?since=3", nil)
		s.expect(t, ": ok", "")
		d.Bump()
		s.expect(t, event(4)...)
	})
	t.Run("resumes from Last-Event-ID", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{})
		s := openWatch(t, srv, "?since=0", http.Header{"Last-Event-Id": {"3"}})
		s.expect(t, ": ok", "")
		d.Bump()
		s.expect(t, event(4)...)
		s.cancel()
		d.Bump()
		d.Bump()
		// A reconnect with the last id seen gets the newest at once.
		s2 := openWatch(t, srv, "?since=0", http.Header{"Last-Event-Id": {"4"}})
		s2.expect(t, event(6)...)
	})
	t.Run("a watcher ahead of a restored catalog learns its revision", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{})
		s := openWatch(t, srv, "?since=40", nil)
		s.expect(t, event(3)...)
		d.Bump()
		s.expect(t, event(4)...)
	})
	t.Run("heartbeats", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{Heartbeat: 20 * time.Millisecond})
		s := openWatch(t, srv, "?since=3", nil)
		s.expect(t, ": ok", "", ": heartbeat", "", ": heartbeat", "")
	})
	t.Run("the watcher may ask for shorter heartbeats", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{Heartbeat: time.Hour})
		s := openWatch(t, srv, "?since=3&heartbeat=100ms", nil)
		s.expect(t, ": ok", "", ": heartbeat", "")
	})
	t.Run("ends when the watcher goes away", func(t *testing.T) {
		d := newFake()
		srv := newServer(t, d, api.Options{})
		s := openWatch(t, srv, "", nil)
		s.expect(t, event(3)...)
		if d.Subscribers() != 1 {
			t.Fatalf("%d subscribers, want 1", d.Subscribers())
		}
		s.cancel()
		waitFor(t, "the subscription to end", func() bool { return d.Subscribers() == 0 })
	})
	bad := []struct{ name, query, lastID, want string }{
		{"since not a number", "?since=x", "", "since must be a revision"},
		{"negative since", "?since=-1", "", "since must be a revision"},
		{"bad Last-Event-ID", "", "abc", "Last-Event-ID must be a revision"},
		{"bad heartbeat", "?heartbeat=often", "", "heartbeat must be a positive duration"},
	}
	srv := newServer(t, newFake(), api.Options{})
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+api.WatchPath+c.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			if c.lastID != "" {
				req.Header.Set("Last-Event-ID", c.lastID)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			r := response{status: resp.StatusCode, header: resp.Header, body: b}
			if r.status != 400 || !strings.Contains(r.errorText(t), c.want) {
				t.Fatalf("status %d %s, want 400 saying %q", r.status, b, c.want)
			}
		})
	}
}
