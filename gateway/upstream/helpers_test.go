package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

// clock is an injectable, manually advanced clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	aliceToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.inbound-alice-signature"
	bobToken   = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.inbound-bob-signature"
)

func alice(clk *clock) *gateway.Identity {
	return &gateway.Identity{Subject: "alice@example.com", Actor: "research-agent", Scopes: []string{"mcp"},
		Token: aliceToken, TokenID: "tid-alice", Expiry: clk.Now().Add(time.Hour)}
}

func bob(clk *clock) *gateway.Identity {
	return &gateway.Identity{Subject: "bob@example.com", Token: bobToken, TokenID: "tid-bob", Expiry: clk.Now().Add(time.Hour)}
}

func conn(mode string, opts map[string]string, secrets map[string]string) *gateway.Connection {
	o := map[string]string{"url": "https://mcp.example.com/mcp", "auth_mode": mode}
	for k, v := range opts {
		o[k] = v
	}
	return &gateway.Connection{Name: "system.ai.my_mcp", URL: o["url"], AuthMode: mode, Options: o, Secrets: secrets, Revision: 7}
}

// recorded is one request a fake token endpoint received.
type recorded struct {
	Form     url.Values
	Header   http.Header
	User     string // Basic auth user, form-decoded
	Password string
	BasicOK  bool
	Raw      string // raw body
}

// fakeIdP is an httptest token endpoint. respond decides the answer.
type fakeIdP struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	n       atomic.Int64
	respond func(w http.ResponseWriter, r *http.Request, rec recorded)
}

func newIdP(t *testing.T, respond func(w http.ResponseWriter, r *http.Request, rec recorded)) *fakeIdP {
	t.Helper()
	f := &fakeIdP{respond: respond}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := recorded{Header: r.Header.Clone(), Raw: string(body)}
		rec.Form, _ = url.ParseQuery(string(body))
		if u, p, ok := r.BasicAuth(); ok {
			rec.BasicOK = true
			rec.User, _ = url.QueryUnescape(u)
			rec.Password, _ = url.QueryUnescape(p)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, rec)
		f.mu.Unlock()
		f.n.Add(1)
		f.respond(w, r, rec)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) URL() string { return f.srv.URL + "/oauth2/token" }

func (f *fakeIdP) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// issued is the token a fake IdP issues for a subject token.
func issued(subjectToken string, n int64) string {
	return "upstream-" + base64.RawURLEncoding.EncodeToString([]byte(subjectToken))[:12] + "-" + string(rune('a'+n%26))
}

func newCreds(t testing.TB, clk *clock, mut func(*Config)) *Credentials {
	t.Helper()
	cfg := Config{Issuer: "https://gw.example.com", Now: clk.Now}
	if mut != nil {
		mut(&cfg)
	}
	cr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

func newKeys(t testing.TB, clk *clock, dir string) *KeySet {
	t.Helper()
	ks, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}
