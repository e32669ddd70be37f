package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Storage is split by what each part needs:
//
//   - Store is the catalog's persistence. The catalog is loaded once, at
//     start (the newest snapshot and the change records after it); then
//     every committed change is appended as one record (Change) that holds
//     its row changes and the audit records of its statements, so that a
//     change and its audit are durable together; now and then the Service
//     writes a snapshot, so that a start replays few records, and prunes
//     the records the snapshot covers. Implementations: walstore (embedded:
//     a log file and a snapshot file), pgstore (PostgreSQL, shared by
//     replicas), memstore (tests).
//   - EventStore is the event stream: audit events (gateway calls,
//     decisions, refused statements), appended with group commit
//     (AuditLog) under a backpressure of its own that never holds up a
//     catalog write, and read by the system tables. The audit records of
//     catalog changes reach it from the change records: the Service
//     forwards them (AppendChangeAudit), and AuditedRevision says how far
//     it got, so none is lost or doubled across a crash. Implementations:
//     duckstore behind auditwal (embedded), pgstore.Events behind auditwal
//     (PostgreSQL, shared by replicas), memstore.
//
// Every implementation runs the conformance suite of its interface
// (storetest.RunStore, storetest.RunEvents); implementations translate
// driver errors into *Error at the edge (CodeUnavailable, CodeInternal,
// CodeConflict, ...).

// State is the whole catalog at one revision: what a snapshot holds and
// what a start loads.
type State struct {
	Revision    Revision
	NextID      ID // next free principal/securable ID
	Principals  []Principal
	Memberships []Membership
	Securables  []Securable
	Grants      []Grant
}

// Change is one committed catalog change: the record a Store appends. Its
// Ops are the row changes in the order they apply; Audit holds the audit
// records of the statements that made it (all with Revision set to the
// change's revision).
type Change struct {
	Revision Revision     `json:"rev"`
	NextID   ID           `json:"next_id"` // the next free ID after the change
	Ops      []ChangeOp   `json:"ops"`
	Audit    []AuditEvent `json:"audit,omitempty"`
}

// OpKind names the row change a ChangeOp makes.
type OpKind string

// Row changes. Deleting a principal removes the grants to it and the
// memberships it is part of; deleting a securable removes the grants on
// it (children are deleted by their own ops first).
const (
	OpPutPrincipal    OpKind = "put_principal"
	OpDeletePrincipal OpKind = "delete_principal"
	OpAddMember       OpKind = "add_member"
	OpRemoveMember    OpKind = "remove_member"
	OpPutSecurable    OpKind = "put_securable"
	OpDeleteSecurable OpKind = "delete_securable"
	OpAddGrant        OpKind = "add_grant"
	OpRemoveGrant     OpKind = "remove_grant"
)

// ChangeOp is one row change of a Change. The field its Kind names is set.
type ChangeOp struct {
	Kind       OpKind      `json:"k"`
	Principal  *Principal  `json:"p,omitempty"`
	Membership *Membership `json:"m,omitempty"`
	Securable  *Securable  `json:"s,omitempty"`
	Grant      *Grant      `json:"g,omitempty"`
	GrantKey   *GrantKey   `json:"gk,omitempty"`
	ID         ID          `json:"id,omitempty"`
}

// Apply writes the op to a row store's transaction (memstore, the upgrade
// of older data directories).
func (o *ChangeOp) Apply(ctx context.Context, tx RWTx) error {
	switch {
	case o.Kind == OpPutPrincipal && o.Principal != nil:
		return tx.PutPrincipal(ctx, *o.Principal)
	case o.Kind == OpDeletePrincipal:
		return tx.DeletePrincipal(ctx, o.ID)
	case o.Kind == OpAddMember && o.Membership != nil:
		return tx.AddMembership(ctx, *o.Membership)
	case o.Kind == OpRemoveMember && o.Membership != nil:
		return tx.RemoveMembership(ctx, *o.Membership)
	case o.Kind == OpPutSecurable && o.Securable != nil:
		return tx.PutSecurable(ctx, *o.Securable)
	case o.Kind == OpDeleteSecurable:
		return tx.DeleteSecurable(ctx, o.ID)
	case o.Kind == OpAddGrant && o.Grant != nil:
		return tx.AddGrant(ctx, *o.Grant)
	case o.Kind == OpRemoveGrant && o.GrantKey != nil:
		return tx.RemoveGrant(ctx, *o.GrantKey)
	}
	return Errorf(CodeInternal, "catalog: malformed change op %q", o.Kind)
}

// Store is the catalog's persistence (see above). Appends come from one
// committer per process; a store shared by several processes (replicas)
// serializes them itself and refuses a stale base with CodeConflict.
type Store interface {
	// Load returns the newest snapshot (an empty State at revision 0 for
	// a new store) and the change records after it, oldest first.
	Load(ctx context.Context) (*State, []Change, error)
	// Head returns the revision of the newest change record (0 when none).
	Head(ctx context.Context) (Revision, error)
	// Append makes changes durable together (all or none) as revisions
	// base+1, base+2, ... (their Revision fields say so). If the newest
	// revision is not base (another writer appended first), nothing is
	// written and the error has CodeConflict (wrapping a *Conflict when
	// the store read the newer records on the way). An error of another code
	// may leave the outcome unknown (a connection lost during the commit):
	// the caller learns it from Changes.
	Append(ctx context.Context, base Revision, changes []Change) error
	// Changes returns up to limit change records after revision after,
	// oldest first (none when after is the newest). If some of them were
	// pruned the error is ErrPruned: load the newest snapshot instead.
	Changes(ctx context.Context, after Revision, limit int) ([]Change, error)
	// WriteSnapshot stores st durably. Its revision is one the store holds.
	WriteSnapshot(ctx context.Context, st *State) error
	// Prune lets the store drop the change records up to revision through,
	// which a snapshot covers (it may keep them longer).
	Prune(ctx context.Context, through Revision) error
	// Close releases the store. Every later call fails with CodeUnavailable.
	Close() error
}

// Watcher is implemented by stores that other processes append to as well
// (replicas on one database). The Service then follows the store: it polls
// Head and applies the records of other writers. Changed and Announced are
// hints (coalesced, best effort: polling never depends on them).
type Watcher interface {
	// Changed returns a channel that is closed when a writer appended
	// (call it again for the next one). Announced already tells the
	// revision when the channel is closed.
	Changed() <-chan struct{}
	// Announced returns the newest revision appends were announced at (0
	// when none was): the committer catches up before it plans a batch
	// that would otherwise be refused for a stale base.
	Announced() Revision
}

// Carrier is implemented by a Watcher whose notifications carry the
// change records they announce (pgstore: in the NOTIFY payload, when
// small): a follower applies them without reading them. It is a hint as
// the notifications are: a record not carried (too large, a notification
// missed while reconnecting, not yet arrived) is read from the store.
type Carrier interface {
	// Carried returns the records after revision after that notifications
	// carried, oldest first and without a gap (after+1, after+2, ...), as
	// Changes would return them (without their Audit unless audit is
	// set); none when after+1 was not carried.
	Carried(after Revision, audit bool) []Change
}

// ForwardLease elects the one replica of a shared Store that forwards the
// audit records of every replica's catalog changes to the shared event
// stream (Options.ForwardLease): the others only learn how far it got.
// Exclusivity is an economy, not a guarantee the Service relies on: the
// event stream stores a change's audit once whoever forwards it
// (EventStore.AppendChangeAudit), so two forwarders during a handover
// double work, never rows.
type ForwardLease interface {
	// Hold takes the lease, or confirms that this process still holds
	// it (the Service calls it every second): false while another
	// process holds it.
	Hold(ctx context.Context) (bool, error)
	// AuditedRevision is the shared event stream's AuditedRevision: how
	// far the holder got, as every replica sees it.
	AuditedRevision(ctx context.Context) (Revision, error)
	// Release gives the lease up (Service.Close).
	Release()
}

// HeadLocker is implemented by a shared Store that lets a writer reserve
// its next append: a writer that lost a race takes the head first (other
// writers' appends queue behind it), applies what it lacks, plans again
// and appends, which then cannot lose. Without it, the writer that just
// won (which knows the new head at once) tends to win again while the
// losers catch up, and a loser's statements may fail after many rounds.
type HeadLocker interface {
	// LockHead waits until no other writer holds the head and holds it
	// until the HeldHead's Append or Release; the Conflict is the head and
	// the records after rev (Newer follows rev without a gap, or is empty
	// when they are more than a page: the caller reads them). Without
	// audit, the records' Audit may be left out (a replica that does not
	// forward the change audit need not decode it).
	LockHead(ctx context.Context, rev Revision, audit bool) (HeldHead, *Conflict, error)
}

// HeldHead is the head of a shared Store held by one writer (LockHead).
type HeldHead interface {
	// Append is Store.Append on the held head, and releases it.
	Append(ctx context.Context, base Revision, changes []Change) error
	// Release releases the head without appending (no-op after Append).
	Release()
}

// Conflict is what a shared Store's Append may wrap in its CodeConflict
// error: the store's head and the change records after the refused base
// (up to a page of them), read in the same round trip, so that the
// Service applies them and plans again without reading them first. Newer
// follows the base without a gap (or is empty: the Service reads them).
type Conflict struct {
	Head  Revision
	Newer []Change
}

func (c *Conflict) Error() string {
	return fmt.Sprintf("catalog store: the head is revision %d (%d newer change records)", c.Head, len(c.Newer))
}

// ErrPruned is returned by Store.Changes when records it was asked for
// were pruned (a reader that fell far behind loads a snapshot instead).
var ErrPruned = &Error{Code: CodeInternal, Msg: "catalog store: the change records asked for were pruned; load the newest snapshot"}

// IsPruned reports whether err is ErrPruned.
func IsPruned(err error) bool { return errors.Is(err, ErrPruned) }

// EventStore is the event stream (see above).
type EventStore interface {
	AuditWriter // gateway calls, decisions, refused statements
	AuditReader
	// AuditedRevision returns the catalog revision through which the store
	// holds the audit records of catalog changes.
	AuditedRevision(ctx context.Context) (Revision, error)
	// AppendChangeAudit appends the audit records of the catalog changes
	// up to revision through and records through as the new
	// AuditedRevision, atomically. Events of revisions the store already
	// holds (Revision <= AuditedRevision) are skipped, so forwarding the
	// same changes twice stores them once.
	AppendChangeAudit(ctx context.Context, through Revision, events []AuditEvent) error
	Close() error
}

// --- rows ---
//
// The roles below are the catalog as rows: how a row store (memstore, the
// upgrade of data directories whose catalog lived in DuckDB tables)
// applies change ops and reads them back.

// Meta is a row store's bookkeeping row.
type Meta struct {
	Revision Revision // revision of the last committed change
	NextID   ID       // next free principal/securable ID
	// LogSeq is the sequence number of the last write-ahead-log record
	// applied to the rows (older data directories; 0 otherwise).
	LogSeq int64
}

// Reader reads the committed catalog rows.
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

// RWTx is a read-write transaction of a row store.
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

// ReadState reads every row of r into a State (sorted as Load expects).
func ReadState(ctx context.Context, r Reader) (*State, error) {
	meta, err := r.Meta(ctx)
	if err != nil {
		return nil, err
	}
	st := &State{Revision: meta.Revision, NextID: meta.NextID}
	if st.Principals, err = r.ListPrincipals(ctx); err != nil {
		return nil, err
	}
	if st.Memberships, err = r.ListMemberships(ctx); err != nil {
		return nil, err
	}
	if st.Securables, err = r.ListSecurables(ctx); err != nil {
		return nil, err
	}
	if st.Grants, err = r.ListGrants(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// --- audit ---

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
	EventID       string // UUID (NewEventID)
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

// Normalized returns a copy of c as every store returns it: times in UTC
// truncated to microseconds (the precision of TIMESTAMPTZ), and nothing
// shared with c that a later change of c could alter.
func (c Change) Normalized() Change {
	c.Ops = append([]ChangeOp(nil), c.Ops...)
	for i := range c.Ops {
		o := &c.Ops[i]
		if o.Principal != nil {
			p := *o.Principal
			p.Created = utcMicro(p.Created)
			o.Principal = &p
		}
		if o.Securable != nil {
			s := o.Securable.clone()
			s.Created = utcMicro(s.Created)
			o.Securable = &s
		}
		if o.Membership != nil {
			m := *o.Membership
			o.Membership = &m
		}
		if o.Grant != nil {
			g := *o.Grant
			o.Grant = &g
		}
		if o.GrantKey != nil {
			k := *o.GrantKey
			o.GrantKey = &k
		}
	}
	c.Audit = append([]AuditEvent(nil), c.Audit...)
	for i := range c.Audit {
		c.Audit[i].Time = utcMicro(c.Audit[i].Time)
	}
	return c
}

// Normalized returns a copy of st with its times in UTC truncated to
// microseconds.
func (st *State) Normalized() *State {
	c := *st
	c.Principals = append([]Principal(nil), st.Principals...)
	for i := range c.Principals {
		c.Principals[i].Created = utcMicro(c.Principals[i].Created)
	}
	c.Securables = make([]Securable, len(st.Securables))
	for i := range st.Securables {
		c.Securables[i] = st.Securables[i].clone()
		c.Securables[i].Created = utcMicro(c.Securables[i].Created)
	}
	c.Memberships = append([]Membership(nil), st.Memberships...)
	c.Grants = append([]Grant(nil), st.Grants...)
	return &c
}

// clone copies s with its own Options and Secrets (nil stays nil, empty
// stays empty).
func (s *Securable) clone() Securable {
	c := *s
	c.full = ""
	if s.Options != nil {
		c.Options = make(map[string]string, len(s.Options))
		for k, v := range s.Options {
			c.Options[k] = v
		}
	}
	if s.Secrets != nil {
		c.Secrets = append([]byte{}, s.Secrets...)
	}
	return c
}

func utcMicro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
