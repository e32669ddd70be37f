package pipeline_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// subjectAuth: "Authorization: Bearer <subject>".
type subjectAuth struct{}

func (subjectAuth) Authenticate(_ context.Context, r *http.Request, _ string) (*gateway.Identity, error) {
	s, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || s == "" {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_request", Description: "missing bearer token"}
	}
	return &gateway.Identity{Subject: s, Actor: r.Header.Get("X-Agent")}, nil
}

// holdProto holds its call upstream until released, then ends it as its
// mode (the X-Mode header) says: "ok" answers, "error" fails upstream,
// "panic" panics in the relay, "stream" opens a stream and holds it until
// the client leaves; "" answers at once.
type holdProto struct {
	echoProto
	mode    string
	started chan<- struct{}
	release <-chan struct{}
}

func (x *holdProto) Send(ctx context.Context, c *pipeline.Call, cred string) (*http.Response, error) {
	if x.mode != "" {
		x.started <- struct{}{}
	}
	if x.mode != "" && x.mode != "stream" {
		select {
		case <-x.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if x.mode == "error" {
		return nil, errors.New("connection refused")
	}
	return x.echoProto.Send(ctx, c, cred)
}

// Render sets Retry-After, as every adapter does.
func (x *holdProto) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	a := x.echoProto.Render(c, err)
	if err.RetryAfter > 0 {
		a.Header = http.Header{"Retry-After": {strconv.Itoa(int(err.RetryAfter / time.Second))}}
	}
	return a
}

func (x *holdProto) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	switch x.mode {
	case "panic":
		panic(http.ErrAbortHandler)
	case "stream":
		c.Status = 200
		if err := c.Commit(false); err != nil {
			return err
		}
		c.Writer().Header().Set("Content-Type", "text/event-stream")
		c.Writer().WriteHeader(200)
		_ = http.NewResponseController(c.Writer()).Flush()
		<-ctx.Done()
		return ctx.Err()
	}
	return x.echoProto.Relay(ctx, c, resp)
}

// TestInFlightPerSubject: a subject with MaxInFlightPerSubject calls in
// progress is refused the next (429, Retry-After, audited as a limit
// refusal) while another subject gets through; the slots come back however
// the calls end, and no entry is left once none is in progress.
func TestInFlightPerSubject(t *testing.T) {
	const limit = 2
	audit := &sink{}
	p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1", Auth: subjectAuth{}, Authz: authz{},
		Credentials: noCreds{}, Audit: audit, MaxInFlightPerSubject: limit})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &holdProto{mode: r.Header.Get("X-Mode"), started: started, release: release,
			echoProto: echoProto{upstream: func([]byte) (int, string) { return 200, `{"ok":true}` }}}
		p.Serve(w, r, &x.call, x)
	}))
	t.Cleanup(srv.Close)
	call := func(ctx context.Context, subject, agent, mode string) (*http.Response, string, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader(`{"model":"m"}`))
		req.Header.Set("Authorization", "Bearer "+subject)
		req.Header.Set("X-Agent", agent)
		req.Header.Set("X-Mode", mode)
		resp, err := srv.Client().Do(req)
		if err != nil {
			return nil, "", err
		}
		if mode == "stream" {
			return resp, "", nil // the caller ends it
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	for _, tc := range []struct {
		mode string
		want int // the held calls' status; 0: no answer (the connection is cut)
	}{{"ok", 200}, {"error", 502}, {"panic", 0}, {"stream", 200}} {
		t.Run(tc.mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			type result struct {
				status int
				err    error
			}
			done := make(chan result, limit)
			for i := range limit {
				agent := []string{"agent-a", "agent-b"}[i] // one subject through two agents
				go func() {
					resp, _, err := call(ctx, "alice", agent, tc.mode)
					r := result{err: err}
					if resp != nil {
						r.status = resp.StatusCode
						if tc.mode == "stream" {
							_, _ = io.Copy(io.Discard, resp.Body) // until the client leaves
							resp.Body.Close()
						}
					}
					done <- r
				}()
			}
			for range limit {
				<-started
			}
			resp, body, err := call(t.Context(), "alice", "agent-c", "")
			if err != nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" ||
				!strings.Contains(body, `"type":"limited"`) || !strings.Contains(body, "at most 2 at once") {
				t.Fatalf("alice's call beyond the cap: %v %v %q", err, resp, body)
			}
			if resp, body, err := call(t.Context(), "bob", "agent-a", ""); err != nil || resp.StatusCode != 200 {
				t.Fatalf("bob's call: %v %v %s", err, resp, body)
			}
			if tc.mode == "stream" {
				cancel() // the clients leave mid-stream
			} else {
				for range limit {
					release <- struct{}{}
				}
			}
			for range limit {
				r := <-done
				if tc.want != 0 && tc.mode != "stream" && (r.err != nil || r.status != tc.want) {
					t.Errorf("held call: %d %v, want %d", r.status, r.err, tc.want)
				}
				if tc.want == 0 && r.err == nil {
					t.Errorf("held call answered %d, want the connection cut", r.status)
				}
			}
			waitFor(t, func() bool { return pipeline.InFlightSubjects(p) == 0 })
			if resp, body, err := call(t.Context(), "alice", "agent-a", ""); err != nil || resp.StatusCode != 200 {
				t.Fatalf("alice after her calls ended: %v %v %s", err, resp, body)
			}
			if n := pipeline.InFlightSubjects(p); n != 0 {
				t.Errorf("%d subjects in flight after every call ended", n)
			}
		})
	}
	audit.mu.Lock()
	defer audit.mu.Unlock()
	refused := 0
	for _, ev := range audit.events {
		if ev.StatusCode == http.StatusTooManyRequests {
			refused++
			if ev.Decision != "deny" || ev.UserIdentity != "alice" || !strings.HasPrefix(ev.Reason, "in-flight limit: ") {
				t.Errorf("refusal's audit row: %+v", ev)
			}
		}
	}
	if refused != 4 {
		t.Errorf("%d refusals audited, want 4", refused)
	}
}

func TestInFlightConfig(t *testing.T) {
	_, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1", Auth: subjectAuth{}, Authz: authz{},
		Credentials: noCreds{}, Audit: &sink{}, MaxInFlightPerSubject: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxInFlightPerSubject") {
		t.Fatalf("negative cap: %v", err)
	}
}

// waitFor waits until cond holds (at most 10 s).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("condition not reached in 10 s")
		}
	}
}
