package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// echoProto is the smallest protocol: a POST body names a model service
// ({"model": "m"}) and is relayed to an in-memory upstream. It shows what
// an adapter does and nothing more.
type echoProto struct {
	call     pipeline.Call
	upstream func(body []byte) (int, string)
	renders  int
	declare  bool // the answer declares its length (Content-Length)
	// partial: the answer is committed not final (its completion left to
	// the audit stage); declareErrors: Render declares its length too;
	// sendErr: the upstream cannot be reached.
	partial       bool
	declareErrors bool
	sendErr       error
}

func (x *echoProto) Service() string { return "llm" }

func (x *echoProto) Resolve(ctx context.Context, c *pipeline.Call) error {
	body, _ := io.ReadAll(c.Request.Body)
	var m struct {
		Model string `json:"model"`
	}
	if json.Unmarshal(body, &m) != nil || m.Model == "" {
		return &pipeline.Error{Kind: pipeline.KindInvalid, Message: "body must name a model"}
	}
	c.Action = "chat.completions"
	c.Securable = enforce.SecurableRef{Type: "MODEL SERVICE", Name: "system.ai." + m.Model}
	c.Privilege = "EXECUTE"
	c.Context = map[string]any{"model": m.Model}
	c.Content = &pipeline.Content{Format: "openai.chat", Body: body}
	c.BytesIn = int64(len(body))
	return nil
}

func (x *echoProto) Send(ctx context.Context, c *pipeline.Call, cred string) (*http.Response, error) {
	if x.sendErr != nil {
		return nil, x.sendErr
	}
	st, out := x.upstream(c.Content.Body)
	return &http.Response{StatusCode: st, Body: io.NopCloser(strings.NewReader(out)), Header: http.Header{}}, nil
}

func (x *echoProto) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	b, _ := io.ReadAll(resp.Body)
	c.Usage = pipeline.Usage{InputTokens: 3, OutputTokens: 5}
	b, err := c.GuardPiece(ctx, "openai.chat", b, true)
	if err != nil {
		return err
	}
	c.Status, c.BytesOut = resp.StatusCode, int64(len(b))
	if err := c.Commit(!x.partial); err != nil {
		return err
	}
	if x.declare {
		c.Writer().Header().Set("Content-Length", strconv.Itoa(len(b)))
	}
	c.Writer().WriteHeader(resp.StatusCode)
	_, _ = c.Writer().Write(b)
	return nil
}

func (x *echoProto) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	x.renders++
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": err.Kind.String(), "message": err.Message}})
	a := pipeline.Answer{Status: err.Status, ContentType: "application/json", Body: b}
	if x.declareErrors {
		a.Header = http.Header{"Content-Length": {strconv.Itoa(len(b))}}
	}
	return a
}

func (x *echoProto) AuditParams(c *pipeline.Call) string {
	b, _ := json.Marshal(map[string]any{"input_tokens": c.Usage.InputTokens, "output_tokens": c.Usage.OutputTokens})
	return string(b)
}

type okAuth struct{}

func (okAuth) Authenticate(_ context.Context, r *http.Request, _ string) (*gateway.Identity, error) {
	if r.Header.Get("Authorization") == "" {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_request", Description: "missing bearer token"}
	}
	return &gateway.Identity{Subject: "alice", Actor: "agent"}, nil
}

type authz struct{ deny string }

func (a authz) Authorize(_ context.Context, r enforce.Request) (enforce.Decision, error) {
	if a.deny != "" {
		return enforce.Decision{Reason: a.deny}, nil
	}
	return enforce.Decision{Allowed: true, Reason: "granted", Revision: 3}, nil
}

type noCreds struct{}

func (noCreds) Authorization(context.Context, *gateway.Connection, *gateway.Identity) (string, error) {
	return "", errors.New("must not be asked: the call names no upstream connection")
}

type sink struct {
	mu     sync.Mutex
	events []catalog.AuditEvent
}

func (s *sink) Record(_ context.Context, ev catalog.AuditEvent) error {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	return nil
}

type meter struct{ usage []pipeline.Usage }

func (m *meter) Record(_ context.Context, c *pipeline.Call) { m.usage = append(m.usage, c.Usage) }

func TestAnotherProtocol(t *testing.T) {
	for _, tc := range []struct {
		name, body, auth, deny string
		status                 int
		decision               string
		metered                bool
	}{
		{"answered", `{"model":"frontier"}`, "Bearer x", "", 200, "allow", true},
		{"unauthenticated", `{"model":"frontier"}`, "", "", 401, "deny", false},
		{"malformed", `{}`, "Bearer x", "", 400, "deny", false},
		{"denied", `{"model":"frontier"}`, "Bearer x", `subject "alice" lacks EXECUTE on MODEL SERVICE system.ai.frontier`, 403, "deny", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, m := &sink{}, &meter{}
			p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{tc.deny},
				Credentials: noCreds{}, Audit: s, Meter: m})
			if err != nil {
				t.Fatal(err)
			}
			x := &echoProto{upstream: func(b []byte) (int, string) { return 200, `{"choices":[]}` }}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8470/llm/v1/chat/completions", strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			x.call.Securable = enforce.SecurableRef{Type: "MODEL SERVICE"}
			p.Serve(w, req, &x.call, x)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if (tc.status == 200) != (x.renders == 0) {
				t.Fatalf("%d renders for status %d", x.renders, tc.status)
			}
			if len(s.events) != 1 {
				t.Fatalf("%d audit records, want 1", len(s.events))
			}
			ev := s.events[0]
			if ev.Service != "llm" || ev.StatusCode != tc.status || ev.Decision != tc.decision || ev.Completes {
				t.Fatalf("audit %+v", ev)
			}
			if tc.metered != (len(m.usage) == 1 && m.usage[0].OutputTokens == 5) || len(m.usage) != 1 {
				t.Fatalf("metered %+v (every call is metered; usage only when answered)", m.usage)
			}
			if tc.name == "denied" && (!strings.Contains(w.Body.String(), "lacks EXECUTE") || ev.SecurableName != "system.ai.frontier") {
				t.Fatalf("denial %s, audit %+v", w.Body, ev)
			}
		})
	}
}

// recordingGuard masks the call's body and denies answers that say
// "secret", recording each outcome on the call.
type recordingGuard struct{}

func (recordingGuard) Call(_ context.Context, c *pipeline.Call, in *pipeline.Content) (pipeline.Verdict, error) {
	c.AddGuardrail(pipeline.GuardrailOutcome{Policy: "pii", Guardrail: "detect_sensitive_data", Phase: "call", Mode: "enforce",
		Action: "mask", Entities: map[string]int{"EMAIL": 1}})
	return pipeline.Verdict{Action: pipeline.Rewrite, Body: []byte(strings.Replace(string(in.Body), "a@b.example", "<EMAIL_1>", 1))}, nil
}

func (recordingGuard) Result(context.Context, *pipeline.Call) (pipeline.ResultGuard, error) {
	return resultFunc(func(_ context.Context, c *pipeline.Call, out *pipeline.Content) (pipeline.Verdict, error) {
		if !strings.Contains(string(out.Body), "secret") {
			return pipeline.Verdict{}, nil
		}
		c.AddGuardrail(pipeline.GuardrailOutcome{Policy: "no_secrets", Guardrail: "rego", Phase: "result", Mode: "enforce", Action: "deny"})
		return pipeline.Verdict{Action: pipeline.Deny, Reason: "policy no_secrets (rego): a secret"}, nil
	}), nil
}

type resultFunc func(context.Context, *pipeline.Call, *pipeline.Content) (pipeline.Verdict, error)

func (f resultFunc) Piece(ctx context.Context, c *pipeline.Call, out *pipeline.Content) (pipeline.Verdict, error) {
	return f(ctx, c, out)
}

// TestGuardrailOutcomesAudited: what the guard stages did lands in the
// call's audit row (its guardrails column), for calls answered and
// refused.
func TestGuardrailOutcomesAudited(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		status       int
		want         []string
	}{
		{"masked", `{"choices":[]}`, 200, []string{"pii/call/mask"}},
		{"refused", `{"choices":["secret"]}`, 403, []string{"pii/call/mask", "no_secrets/result/deny"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &sink{}
			p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{},
				Credentials: noCreds{}, Audit: s, Guard: recordingGuard{}})
			if err != nil {
				t.Fatal(err)
			}
			var upstream string
			x := &echoProto{upstream: func(b []byte) (int, string) { upstream = string(b); return 200, tc.answer }}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8470/llm/v1/chat/completions", strings.NewReader(`{"model":"frontier","to":"a@b.example"}`))
			req.Header.Set("Authorization", "Bearer x")
			w := httptest.NewRecorder()
			p.Serve(w, req, &x.call, x)
			if w.Code != tc.status || !strings.Contains(upstream, "<EMAIL_1>") {
				t.Fatalf("status %d (%s), upstream got %s", w.Code, w.Body, upstream)
			}
			ev := s.events[len(s.events)-1]
			var got []pipeline.GuardrailOutcome
			if err := json.Unmarshal([]byte(ev.Guardrails), &got); err != nil {
				t.Fatalf("guardrails column %q: %v", ev.Guardrails, err)
			}
			var names []string
			for _, o := range got {
				names = append(names, o.Policy+"/"+o.Phase+"/"+o.Action)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") || strings.Contains(ev.Guardrails, "a@b.example") {
				t.Fatalf("guardrails column %s, want %v", ev.Guardrails, tc.want)
			}
		})
	}
}

// TestRandomHex: n random bytes as 2n lowercase hex digits, short and
// long, and a trace id and span id cut from one form a valid traceparent.
func TestRandomHex(t *testing.T) {
	for _, n := range []int{1, 8, 16, 24, 33, 100} {
		s := pipeline.RandomHex(n)
		if len(s) != 2*n || strings.Trim(s, "0123456789abcdef") != "" {
			t.Fatalf("RandomHex(%d) = %q", n, s)
		}
	}
	if a, b := pipeline.RandomHex(16), pipeline.RandomHex(16); a == b {
		t.Fatalf("two ids alike: %s", a)
	}
	ids := pipeline.RandomHex(24)
	if tp := "00-" + ids[:32] + "-" + ids[32:] + "-01"; pipeline.TraceIDOf(tp) != ids[:32] {
		t.Fatalf("%s is not a valid traceparent", tp)
	}
}
