package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// orderLog is the order in which a call's audit records and its answer
// happened.
type orderLog struct {
	mu sync.Mutex
	ev []string
}

func (l *orderLog) add(s string) {
	l.mu.Lock()
	l.ev = append(l.ev, s)
	l.mu.Unlock()
}

func (l *orderLog) events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ev)
}

// heldWriter is an audit store whose writes (their sync) wait for
// release: a held --audit-sync on. A write with a request record or a
// call's only record logs "durable" when it returns; with fail set it
// fails instead.
type heldWriter struct {
	log     *orderLog
	release chan struct{}
	fail    bool
}

func (w *heldWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	select {
	case <-w.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if w.fail {
		return errors.New("disk full")
	}
	if slices.ContainsFunc(events, func(ev catalog.AuditEvent) bool { return !ev.Completes }) {
		w.log.add("durable")
	}
	return nil
}

// loggedQueue is the audit log with what the pipeline queued logged.
type loggedQueue struct {
	*catalog.AuditLog
	log *orderLog
}

func (q loggedQueue) Record(ctx context.Context, ev catalog.AuditEvent) error {
	err := q.AuditLog.Record(ctx, ev)
	if err == nil {
		q.log.add("record written")
	}
	return err
}

func (q loggedQueue) Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error) {
	ack, err := q.AuditLog.Enqueue(ctx, ev)
	if err == nil {
		q.log.add("request queued")
	}
	return ack, err
}

func (q loggedQueue) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	err := q.AuditLog.Submit(ctx, ev)
	if err == nil && ev.Completes {
		q.log.add("completion queued")
	} else if err == nil {
		q.log.add("record queued")
	}
	return err
}

// wire is the client's side of the connection as net/http would make it:
// the answer leaves the server at a flush ("flush") or when the handler
// returns ("returned"), whichever is first; "header" is its header
// written (buffered).
type wire struct {
	log    *orderLog
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *wire) Header() http.Header { return w.h }

func (w *wire) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		w.log.add("header")
	}
}

func (w *wire) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

func (w *wire) Flush() {
	if w.status != 0 {
		w.log.add("flush")
	}
}

// TestAnswerAfterItsRecord: whatever the path, the client never has an
// answer before the call's record is durable (--audit-sync on: with the
// store's sync held, nothing has left), and never before the call's final
// record (its completion, or its only record) is queued or written, so a
// query after the answer sees the call complete. An answer of declared
// length leaves before the call's end exactly when that record is
// settled; others when the handler returns.
func TestAnswerAfterItsRecord(t *testing.T) {
	const answer = `{"choices":[{"message":{"content":"hi"}}]}`
	// final: the label of the call's final record per mode.
	forwarded := map[string]string{"on": "completion queued", "off": "completion queued"}
	refused := map[string]string{"on": "record written", "off": "record queued"}
	for _, tc := range []struct {
		name   string
		proto  echoProto
		deny   string
		fail   bool // the store fails its write (on only)
		final  map[string]string
		early  bool // the answer leaves before the handler returns
		status int
	}{
		{name: "whole answer of declared length", proto: echoProto{declare: true}, final: forwarded, early: true, status: 200},
		{name: "whole answer, length left to net/http", proto: echoProto{}, final: forwarded, status: 200},
		{name: "completion left to the audit stage", proto: echoProto{declare: true, partial: true}, final: forwarded, status: 200},
		{name: "refusal", proto: echoProto{}, deny: "no grant", final: refused, status: 403},
		{name: "refusal of declared length", proto: echoProto{declareErrors: true}, deny: "no grant", final: refused, early: true, status: 403},
		{name: "upstream failure of declared length", proto: echoProto{declareErrors: true, sendErr: errors.New("connection refused")},
			final: forwarded, early: true, status: 502},
		{name: "audit failure", proto: echoProto{declare: true, declareErrors: true}, fail: true, status: 503},
	} {
		for _, mode := range []string{"on", "off"} {
			if tc.fail && mode == "off" {
				continue // nothing waits for the store
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					log := &orderLog{}
					hw := &heldWriter{log: log, release: make(chan struct{}), fail: tc.fail}
					al := catalog.NewAuditLog(hw, catalog.AuditLogOptions{})
					defer func() {
						if err := al.Close(context.Background()); err != nil {
							t.Error(err)
						}
					}()
					p, err := pipeline.New(pipeline.Config{PublicURL: "http://127.0.0.1:8470", Auth: okAuth{}, Authz: authz{deny: tc.deny},
						Credentials: noCreds{}, Audit: loggedQueue{al, log}, AuditAsync: mode == "off", Meter: &meter{}})
					if err != nil {
						t.Fatal(err)
					}
					x := tc.proto
					x.upstream = func([]byte) (int, string) { return 200, answer }
					x.call.Securable = enforce.SecurableRef{Type: "MODEL SERVICE"}
					r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/llm/v1/chat/completions", strings.NewReader(`{"model":"frontier"}`))
					r.Host = "127.0.0.1:8470"
					r.Header.Set("Authorization", "Bearer x")
					w := &wire{log: log, h: http.Header{}}
					done := make(chan struct{})
					go func() {
						defer close(done)
						p.Serve(w, r, &x.call, &x)
						log.add("returned")
					}()
					if mode == "on" {
						synctest.Wait() // the call waits for the store's sync
						if ev := log.events(); slices.Contains(ev, "header") || slices.Contains(ev, "returned") {
							t.Fatalf("with the sync held: %v; want no answer before the record is durable", ev)
						}
						close(hw.release)
						<-done
					} else {
						<-done // nothing waits for the store
						close(hw.release)
					}
					ev := log.events()
					at := func(s string) int { return slices.Index(ev, s) }
					out := at("returned")
					if f := at("flush"); f >= 0 {
						out = f
					}
					if (at("flush") >= 0) != tc.early {
						t.Errorf("answer flushed before the handler returned: %v, want %v (%v)", at("flush") >= 0, tc.early, ev)
					}
					if mode == "on" && !tc.fail && !(at("durable") >= 0 && at("durable") < at("header")) {
						t.Errorf("the answer's header before the record is durable: %v", ev)
					}
					if f := tc.final[mode]; f != "" && !(at(f) >= 0 && at(f) < out) {
						t.Errorf("the answer left before %q: %v", f, ev)
					}
					if w.status != tc.status || (tc.status == 200) != (w.body.String() == answer) {
						t.Errorf("status %d, body %s; want %d", w.status, w.body.String(), tc.status)
					}
				})
			})
		}
	}
}
