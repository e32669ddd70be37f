package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// AuditPath is the route gateway nodes send their audit events to.
const AuditPath = "/api/v1/audit"

// DefaultMaxAuditEvents is the default of Options.MaxAuditEvents.
const DefaultMaxAuditEvents = 10_000

// AuditRecorder makes audit events durable: RecordBatch returns nil only
// once every event is durable, all in one write (catalog.AuditLog).
type AuditRecorder interface {
	RecordBatch(ctx context.Context, events []catalog.AuditEvent) error
}

var _ AuditRecorder = (*catalog.AuditLog)(nil)

// AuditEvent is an audit event on the wire; the names are those of the
// audit_events columns (Databricks' system.access.audit). event_id (a
// UUID) and event_time are filled in by the catalog when absent; send
// them, so that a retried request can be told from a new one.
type AuditEvent struct {
	EventID         string           `json:"event_id,omitempty"`
	EventTime       time.Time        `json:"event_time,omitzero"`
	ServiceName     string           `json:"service_name"`
	ActionName      string           `json:"action_name"`
	UserIdentity    string           `json:"user_identity,omitempty"`
	RunBy           string           `json:"run_by,omitempty"`
	RunAs           string           `json:"run_as,omitempty"`
	SourceIPAddress string           `json:"source_ip_address,omitempty"`
	UserAgent       string           `json:"user_agent,omitempty"`
	SessionID       string           `json:"session_id,omitempty"`
	RequestID       string           `json:"request_id,omitempty"`
	SecurableType   string           `json:"securable_type,omitempty"`
	SecurableName   string           `json:"securable_name,omitempty"`
	RequestParams   string           `json:"request_params,omitempty"`
	StatusCode      int              `json:"status_code"`
	ErrorMessage    string           `json:"error_message,omitempty"`
	SQLState        string           `json:"sql_state,omitempty"`
	Decision        string           `json:"decision,omitempty"`
	Reason          string           `json:"reason,omitempty"`
	LatencyMs       float64          `json:"latency_ms"`
	Revision        catalog.Revision `json:"revision,omitempty"` // catalog revision of the decision
	// Completes: this event completes the one with its event_id and
	// event_time (catalog.AuditEvent.Completes).
	Completes bool `json:"completes,omitempty"`
	// TraceID, SpanID and Guardrails (a JSON array) are the columns of
	// the same names; Usage the usage of an LLM call, Payload a captured
	// request and response (catalog.AuditEvent).
	TraceID    string        `json:"trace_id,omitempty"`
	SpanID     string        `json:"span_id,omitempty"`
	Guardrails string        `json:"guardrails,omitempty"`
	Usage      *AuditUsage   `json:"usage,omitempty"`
	Payload    *AuditPayload `json:"payload,omitempty"`
}

// AuditUsage is catalog.LLMUsage on the wire, named like the columns of
// system.ai_gateway.usage (cost in billionths of a US dollar).
type AuditUsage struct {
	ProviderService   string  `json:"provider_service,omitempty"`
	Provider          string  `json:"provider,omitempty"`
	Model             string  `json:"model,omitempty"`
	InputTokens       int64   `json:"input_tokens,omitempty"`
	OutputTokens      int64   `json:"output_tokens,omitempty"`
	CachedInputTokens int64   `json:"cached_input_tokens,omitempty"`
	CacheWriteTokens  int64   `json:"cache_write_tokens,omitempty"`
	ReasoningTokens   int64   `json:"reasoning_tokens,omitempty"`
	CostNanos         int64   `json:"cost_nanos,omitempty"`
	TTFTMs            float64 `json:"ttft_ms,omitempty"`
	Streaming         bool    `json:"streaming,omitempty"`
	RequestTags       string  `json:"request_tags,omitempty"`
	Routing           string  `json:"routing,omitempty"`
}

// AuditPayload is catalog.AuditPayload on the wire.
type AuditPayload struct {
	RequestBody  string `json:"request_body,omitempty"`
	ResponseBody string `json:"response_body,omitempty"`
}

// AuditRequest is the body of POST /api/v1/audit.
type AuditRequest struct {
	Events []AuditEvent `json:"events"`
}

// AuditResponse answers it once the events are durable.
type AuditResponse struct {
	Accepted int `json:"accepted"`
}

// WireAuditEvent converts e to its wire form.
func WireAuditEvent(e catalog.AuditEvent) AuditEvent {
	w := AuditEvent{EventID: e.EventID, EventTime: e.Time, ServiceName: e.Service, ActionName: e.Action,
		UserIdentity: e.UserIdentity, RunBy: e.RunBy, RunAs: e.RunAs, SourceIPAddress: e.SourceIP,
		UserAgent: e.UserAgent, SessionID: e.SessionID, RequestID: e.RequestID, SecurableType: e.SecurableType,
		SecurableName: e.SecurableName, RequestParams: e.RequestParams, StatusCode: e.StatusCode,
		ErrorMessage: e.ErrorMessage, SQLState: e.SQLState, Decision: e.Decision, Reason: e.Reason,
		LatencyMs: e.LatencyMs, Revision: e.Revision, Completes: e.Completes,
		TraceID: e.TraceID, SpanID: e.SpanID, Guardrails: e.Guardrails}
	if u := e.Usage; u != nil {
		w.Usage = &AuditUsage{ProviderService: u.ProviderService, Provider: u.Provider, Model: u.Model,
			InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CachedInputTokens: u.CachedInputTokens,
			CacheWriteTokens: u.CacheWriteTokens, ReasoningTokens: u.ReasoningTokens, CostNanos: u.CostNanos,
			TTFTMs: u.TTFTMs, Streaming: u.Streaming, RequestTags: u.RequestTags, Routing: u.Routing}
	}
	if p := e.Payload; p != nil {
		w.Payload = &AuditPayload{RequestBody: p.RequestBody, ResponseBody: p.ResponseBody}
	}
	return w
}

// Catalog converts e to a catalog.AuditEvent.
func (e *AuditEvent) Catalog() catalog.AuditEvent {
	c := catalog.AuditEvent{EventID: e.EventID, Time: e.EventTime, Service: e.ServiceName, Action: e.ActionName,
		UserIdentity: e.UserIdentity, RunBy: e.RunBy, RunAs: e.RunAs, SourceIP: e.SourceIPAddress,
		UserAgent: e.UserAgent, SessionID: e.SessionID, RequestID: e.RequestID, SecurableType: e.SecurableType,
		SecurableName: e.SecurableName, RequestParams: e.RequestParams, StatusCode: e.StatusCode,
		ErrorMessage: e.ErrorMessage, SQLState: e.SQLState, Decision: e.Decision, Reason: e.Reason,
		LatencyMs: e.LatencyMs, Revision: e.Revision, Completes: e.Completes,
		TraceID: e.TraceID, SpanID: e.SpanID, Guardrails: e.Guardrails}
	if u := e.Usage; u != nil {
		c.Usage = &catalog.LLMUsage{ProviderService: u.ProviderService, Provider: u.Provider, Model: u.Model,
			InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CachedInputTokens: u.CachedInputTokens,
			CacheWriteTokens: u.CacheWriteTokens, ReasoningTokens: u.ReasoningTokens, CostNanos: u.CostNanos,
			TTFTMs: u.TTFTMs, Streaming: u.Streaming, RequestTags: u.RequestTags, Routing: u.Routing}
	}
	if p := e.Payload; p != nil {
		c.Payload = &catalog.AuditPayload{RequestBody: p.RequestBody, ResponseBody: p.ResponseBody}
	}
	return c
}

// audit records a node's events and answers once they are durable. The
// request is validated as a whole first: one bad event refuses all (400)
// and nothing is written.
func (h *handler) audit(w http.ResponseWriter, r *http.Request) error {
	if h.o.Audit == nil {
		return errorf(http.StatusServiceUnavailable, "audit ingestion is not configured on this catalog")
	}
	var req AuditRequest
	if err := h.decodeBody(w, r, &req); err != nil {
		return err
	}
	switch {
	case len(req.Events) == 0:
		return errorf(http.StatusBadRequest, "malformed request: events must be a non-empty array")
	case len(req.Events) > h.o.MaxAuditEvents:
		return errorf(http.StatusRequestEntityTooLarge, "%d events are more than the limit of %d per request", len(req.Events), h.o.MaxAuditEvents)
	}
	events := make([]catalog.AuditEvent, len(req.Events))
	for i := range req.Events {
		e := &req.Events[i]
		if strings.TrimSpace(e.ServiceName) == "" {
			return errorf(http.StatusBadRequest, "events[%d]: service_name is required", i)
		}
		if strings.TrimSpace(e.ActionName) == "" {
			return errorf(http.StatusBadRequest, "events[%d]: action_name is required", i)
		}
		events[i] = e.Catalog()
		if err := events[i].Validate(); err != nil {
			return errorf(http.StatusBadRequest, "events[%d]: %s", i, strings.TrimPrefix(err.Error(), "audit event "+e.EventID+": "))
		}
	}
	if err := h.o.Audit.RecordBatch(r.Context(), events); err != nil {
		if catalog.IsCode(err, catalog.CodeInvalidArgument) {
			return errorf(http.StatusBadRequest, "%s", err)
		}
		if !errors.Is(err, context.Canceled) {
			h.log.Error().Err(err).Int("events", len(events)).Str("remote", r.RemoteAddr).Msg("audit events from a node not recorded")
		}
		return errorf(http.StatusServiceUnavailable, "audit events not recorded: %s", auditFailure(err))
	}
	writeJSON(w, http.StatusOK, AuditResponse{Accepted: len(events)})
	return nil
}

// auditFailure describes a failed write without internals.
func auditFailure(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "the audit store did not confirm them in time"
	case catalog.IsCode(err, catalog.CodeUnavailable):
		return "the audit store is unavailable"
	}
	return "internal error"
}
