package llmgw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/llm"
)

// MaxCompleteAnswer bounds the answer Complete reads.
const MaxCompleteAnswer = 1 << 20

// Complete calls model service service with body, an OpenAI chat
// completions request (not streamed), on the gateway's own behalf (a
// guardrail's classifier): the service's destinations and fallbacks with
// their provider credentials, through the same forwarder and translation
// as a client's call, and returns the answer in the OpenAI chat format.
// It runs no pipeline: no client identity, privilege check, guardrails,
// limits or audit row of its own (the call it serves is audited). An
// answer other than 200 is an error carrying its message.
func (h *Handler) Complete(ctx context.Context, service string, body []byte) ([]byte, error) {
	req, err := llm.Parse(llm.ChatCompletions, body, h.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if req.Stream {
		return nil, errors.New("llmgw: Complete does not stream")
	}
	svc, err := h.cfg.Models.ModelService(ctx, service)
	if err == nil && svc == nil {
		err = gateway.ErrNoModelService
	}
	if err != nil {
		return nil, fmt.Errorf("model service %s: %w", service, err)
	}
	x := &exchange{h: h, svc: svc, endpoint: llm.ChatCompletions, cf: llm.ChatCompletions.Format()}
	x.route = x.serviceRoute()
	w := &answerBuffer{header: http.Header{}, status: http.StatusOK}
	res := h.fwd.Forward(ctx, w, &llm.Call{Request: req, Route: x.route, Header: http.Header{}})
	if w.long {
		return nil, fmt.Errorf("model service %s: the answer is longer than %d bytes", svc.Name, MaxCompleteAnswer)
	}
	if res.Status != http.StatusOK && res.Status != 0 || w.status != http.StatusOK {
		msg := w.body.String()
		if res.Err != nil {
			msg = llm.AsError(res.Err).Message
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return nil, fmt.Errorf("model service %s answered %d: %s", svc.Name, max(res.Status, w.status), msg)
	}
	return w.body.Bytes(), nil
}

// answerBuffer is the http.ResponseWriter of Complete: the answer in
// memory, up to MaxCompleteAnswer bytes.
type answerBuffer struct {
	header http.Header
	status int
	body   bytes.Buffer
	long   bool
}

func (b *answerBuffer) Header() http.Header { return b.header }
func (b *answerBuffer) WriteHeader(s int)   { b.status = s }
func (b *answerBuffer) Flush()              {}

func (b *answerBuffer) Write(p []byte) (int, error) {
	if b.body.Len()+len(p) > MaxCompleteAnswer {
		b.long = true
		return 0, errors.New("answer too long")
	}
	return b.body.Write(p)
}
