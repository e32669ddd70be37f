package catalog

import (
	"context"
	"time"
)

// The store is built from small roles (SpiceDB's datastore shape). Writes
// happen only inside Store.ReadWriteTx; implementations translate driver
// errors into *Error at the edge (CodeUnavailable, CodeInternal, ...).
// Every implementation runs the conformance suite in catalog/storetest.

// Meta is the store's bookkeeping row.
type Meta struct {
	Revision Revision // revision of the last committed change
	NextID   ID       // next free principal/securable ID
	// LogSeq is the sequence number of the last write-ahead-log record
	// applied to this store (kept by catalog/walstore; 0 otherwise).
	LogSeq int64
}

// Reader reads the committed catalog state.
type Reader interface {
	Meta(ctx context.Context) (Meta, error)
	ListPrincipals(ctx context.Context) ([]Principal, error)
	ListMemberships(ctx context.Context) ([]Membership, error)
	ListSecurables(ctx context.Context) ([]Securable, error)
	ListGrants(ctx context.Context) ([]Grant, error)
}

// PrincipalWriter writes principals.
type PrincipalWriter interface {
	// PutPrincipal inserts or replaces the principal with p.ID.
	PutPrincipal(ctx context.Context, p Principal) error
	// DeletePrincipal removes the principal, every grant to it and every
	// membership in which it is the group or the member.
	DeletePrincipal(ctx context.Context, id ID) error
}

// MembershipWriter writes group memberships. Adding an existing membership
// and removing a missing one are no-ops.
type MembershipWriter interface {
	AddMembership(ctx context.Context, m Membership) error
	RemoveMembership(ctx context.Context, m Membership) error
}

// SecurableWriter writes securables.
type SecurableWriter interface {
	// PutSecurable inserts or replaces the securable with s.ID.
	PutSecurable(ctx context.Context, s Securable) error
	// DeleteSecurable removes the securable and every grant on it. Children
	// are deleted by the caller first.
	DeleteSecurable(ctx context.Context, id ID) error
}

// GrantWriter writes grants. Adding an existing grant and removing a
// missing one are no-ops.
type GrantWriter interface {
	AddGrant(ctx context.Context, g Grant) error
	RemoveGrant(ctx context.Context, k GrantKey) error
}

// AuditEvent is one audited action. Column names follow Databricks'
// system.access.audit.
//
// A gateway call is recorded in two phases: the request (StatusCode 0,
// no outcome yet) while the upstream call is in flight, then its
// completion, an event with the same EventID and Time and Completes set
// (stores find the row by both). A store
// keeps one row per EventID: a completion replaces the outcome columns of
// the row it completes (SessionID, RequestParams, StatusCode,
// ErrorMessage, SQLState, Decision, Reason, LatencyMs) and leaves the
// others, its time and its position as they were; a completion whose
// request is not stored (never written, or deleted by retention) is
// dropped. A completion always follows its request (both go through the
// same ordered log).
type AuditEvent struct {
	EventID       string // UUID
	Time          time.Time
	Service       string // sql, authorization, mcp, llm
	Action        string // GRANT, CREATE CONNECTION, tools/call, ...
	UserIdentity  string // the human, or the service principal acting on its own
	RunBy         string // the human on whose behalf
	RunAs         string // the agent
	SourceIP      string
	UserAgent     string
	SessionID     string
	RequestID     string
	SecurableType string
	SecurableName string
	RequestParams string // JSON, secrets redacted
	StatusCode    int    // 0 ok; SQL: 1 = error
	ErrorMessage  string
	SQLState      string
	Decision      string // allow, deny
	Reason        string
	LatencyMs     float64
	Revision      Revision // catalog revision the change committed at (0 when refused)
	// Completes marks the completion of the event with this EventID (see
	// above).
	Completes bool `json:",omitempty"`
	// TraceID and SpanID join the event to its trace (W3C trace context,
	// lower-case hex; "" when untraced). A completion's non-empty ids
	// replace the request's.
	TraceID string `json:",omitempty"`
	SpanID  string `json:",omitempty"`
	// Guardrails is a JSON array of the guardrail outcomes of the call
	// (policy, phase, mode, action, entity types and counts; never the
	// matched text); "" for none. An outcome column.
	Guardrails string `json:",omitempty"`
	// Usage is the metering of an LLM call (Service "llm"), set on its
	// completion: the row of system.ai_gateway.usage. An outcome column.
	Usage *LLMUsage `json:",omitempty"`
	// Payload is a captured request and response body pair (Service
	// "llm", Action AuditActionPayload): a row of
	// system.ai_gateway.payloads, never of system.access.audit.
	Payload *AuditPayload `json:",omitempty"`
}

// AuditServiceLLM is the service_name of LLM calls; AuditActionPayload
// the action_name of the events that capture their bodies.
const (
	AuditServiceLLM    = "llm"
	AuditActionPayload = "payload"
)

// LLMUsage is the usage and routing of one LLM call: the columns of
// system.ai_gateway.usage that system.access.audit does not have.
// event_time, request_id, service_name (SecurableName: the model service),
// requester (UserIdentity), run_as (RunAs), status_code (StatusCode: the
// HTTP status answered) and latency_ms (LatencyMs) are the event's own.
type LLMUsage struct {
	// ProviderService is the full name of the provider service that
	// answered (the last attempt's), Provider its provider (openai,
	// anthropic, openai_compatible) and Model the destination model.
	ProviderService string `json:",omitempty"`
	Provider        string `json:",omitempty"`
	Model           string `json:",omitempty"`
	// Token counts, normalized: InputTokens excludes cached input and
	// cache writes (each counted once, in its own class); total_tokens is
	// their sum with OutputTokens. ReasoningTokens are part of
	// OutputTokens.
	InputTokens, OutputTokens, CachedInputTokens, CacheWriteTokens, ReasoningTokens int64 `json:",omitempty"`
	// CostNanos is the cost in billionths of a US dollar (cost_usd is
	// CostNanos / 1e9, exact).
	CostNanos int64 `json:",omitempty"`
	// TTFTMs is the time to the first token of a stream (0 otherwise).
	TTFTMs    float64 `json:",omitempty"`
	Streaming bool    `json:",omitempty"`
	// RequestTags is the JSON object of the call's tags (the service's
	// tags plus X-Mandate-Request-Tags); Routing the JSON array of its
	// attempts (destination, status, latency). "" for none.
	RequestTags string `json:",omitempty"`
	Routing     string `json:",omitempty"`
}

// AuditPayload is a captured request and response body (payload logging
// of a model service, log_payloads 'true'); each is cut to
// AuditMaxPayload bytes.
type AuditPayload struct {
	RequestBody  string `json:",omitempty"`
	ResponseBody string `json:",omitempty"`
}

// CompleteWith applies completion c (c.Completes, same EventID) to e, the
// row it completes: e takes c's outcome columns.
func (e *AuditEvent) CompleteWith(c *AuditEvent) {
	e.SessionID, e.RequestParams, e.StatusCode = c.SessionID, c.RequestParams, c.StatusCode
	e.ErrorMessage, e.SQLState, e.Decision, e.Reason, e.LatencyMs = c.ErrorMessage, c.SQLState, c.Decision, c.Reason, c.LatencyMs
	e.Guardrails, e.Usage = c.Guardrails, c.Usage
	if c.TraceID != "" {
		e.TraceID, e.SpanID = c.TraceID, c.SpanID
	}
}

// AuditWriter appends audit events.
type AuditWriter interface {
	AppendAudit(ctx context.Context, events ...AuditEvent) error
}

// AuditReader reads audit events in time order (oldest first).
type AuditReader interface {
	ListAudit(ctx context.Context, since time.Time, limit int) ([]AuditEvent, error)
}

// RWTx is a read-write transaction.
type RWTx interface {
	Reader
	PrincipalWriter
	MembershipWriter
	SecurableWriter
	GrantWriter
	AuditWriter
	// SetMeta records the revision and the next free ID of this transaction.
	SetMeta(ctx context.Context, m Meta) error
}

// Store is a durable catalog store.
type Store interface {
	Reader
	AuditReader
	AuditWriter // appends in its own durable transaction
	// ReadWriteTx runs fn in a transaction and commits it durably (fsync'd)
	// before returning. If fn returns an error the transaction is rolled back
	// and that error is returned.
	ReadWriteTx(ctx context.Context, fn func(ctx context.Context, tx RWTx) error) error
	Close() error
}
