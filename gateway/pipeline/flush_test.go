package pipeline_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// endObserver sees each call's end (Finished). With gate set it holds that
// end until the client has read the whole answer (got closed), at most
// gateBound, and reports whether the answer came first.
type endObserver struct {
	gate  bool
	got   chan struct{}
	first chan bool
}

// gateBound bounds the wait for an answer that cannot come before the
// call's end (the failure this test is about).
const gateBound = 10 * time.Second

func (o *endObserver) StartStage(ctx context.Context, _ *pipeline.Call, _ pipeline.Stage) (context.Context, func(*pipeline.Error)) {
	return ctx, func(*pipeline.Error) {}
}

func (o *endObserver) Finished(*pipeline.Call) {
	if !o.gate {
		o.first <- false
		return
	}
	t := time.NewTimer(gateBound)
	defer t.Stop()
	select {
	case <-o.got:
		o.first <- true
	case <-t.C:
		o.first <- false
	}
}

// TestWholeAnswerBeforeCallEnd: an answer of declared length reaches the
// client once the call is metered, before the call's end (the audit
// stage, the observers, the handler's return); one without a declared
// length goes when the handler returns, its length declared by net/http
// (not chunked). Both are audited and metered.
func TestWholeAnswerBeforeCallEnd(t *testing.T) {
	const answer = `{"choices":[{"message":{"content":"hi"}}]}`
	for _, tc := range []struct {
		name    string
		declare bool
	}{
		{"declared length", true},
		{"length left to net/http", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &endObserver{gate: tc.declare, got: make(chan struct{}), first: make(chan bool, 1)}
			s, m := &sink{}, &meter{}
			p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{},
				Credentials: noCreds{}, Audit: s, Meter: m, Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				x := &echoProto{declare: tc.declare, upstream: func([]byte) (int, string) { return 200, answer }}
				x.call.Securable = enforce.SecurableRef{Type: "MODEL SERVICE"}
				p.Serve(w, r, &x.call, x)
			}))
			defer srv.Close()
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/llm/v1/chat/completions",
				strings.NewReader(`{"model":"frontier"}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "127.0.0.1:8470"
			req.Header.Set("Authorization", "Bearer x")
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			close(obs.got)
			if err != nil || resp.StatusCode != 200 || string(body) != answer {
				t.Fatalf("status %d, body %q, error %v", resp.StatusCode, body, err)
			}
			if resp.ContentLength != int64(len(answer)) || len(resp.TransferEncoding) != 0 {
				t.Fatalf("Content-Length %d, Transfer-Encoding %v: want the length declared", resp.ContentLength, resp.TransferEncoding)
			}
			if first := <-obs.first; first != tc.declare {
				t.Fatalf("answer read before the call's end: %v, want %v", first, tc.declare)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if len(s.events) != 1 || s.events[0].StatusCode != 200 || len(m.usage) != 1 || m.usage[0].OutputTokens != 5 {
				t.Fatalf("audit %+v, metered %+v", s.events, m.usage)
			}
		})
	}
}
