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
	// TraceID and SpanID are the W3C trace context of a gateway call
	// (hex; "" for none): the span of the call in the trace, so that
	// audit rows and traces join.
	TraceID string `json:",omitempty"`
	SpanID  string `json:",omitempty"`
	// Completes marks the completion of the event with this EventID (see
	// above).
	Completes bool `json:",omitempty"`
}

// CompleteWith applies completion c (c.Completes, same EventID) to e, the
// row it completes: e takes c's outcome columns.
func (e *AuditEvent) CompleteWith(c *AuditEvent) {
	e.SessionID, e.RequestParams, e.StatusCode = c.SessionID, c.RequestParams, c.StatusCode
	e.ErrorMessage, e.SQLState, e.Decision, e.Reason, e.LatencyMs = c.ErrorMessage, c.SQLState, c.Decision, c.Reason, c.LatencyMs
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
