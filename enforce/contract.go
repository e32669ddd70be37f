package enforce

import (
	"context"
	"errors"

	"github.com/mandatehq/mandate/catalog"
)

// SecurableRef names a securable as callers of the authorization API do:
// Type CONNECTION with a 1..3 part dotted Name ("my_github_mcp" means
// system.ai.my_github_mcp; "eng.tools.jira"), CATALOG, SCHEMA, METASTORE.
type SecurableRef struct {
	Type catalog.SecurableType `json:"type"`
	Name string                `json:"name"`
}

// Request is one authorization question.
type Request struct {
	// Subject is the human on whose behalf the call is made, or the
	// service principal itself when an agent acts on its own.
	Subject string `json:"subject"`
	// Actor is the agent's service principal when it acts on behalf of
	// Subject ("" when Subject acts itself).
	Actor     string            `json:"actor,omitempty"`
	Privilege catalog.Privilege `json:"privilege"`
	Securable SecurableRef      `json:"securable"`
	// Context carries call details for policies (method, tool, arguments,
	// source_ip, time).
	Context map[string]any `json:"context,omitempty"`
	// LazyContext, when Context is nil, builds the context only when it
	// is needed: when a policy applies to the securable, or when the
	// request leaves the process (enforce/client sends ContextMap). The
	// gateways set it so that calls no policy looks at do not pay for
	// the map.
	LazyContext ContextSource `json:"-"`
	// Explain asks for the derivation (Decision.Steps, one per requirement
	// of subject and actor). Without it a decision carries its reason only,
	// which is much cheaper.
	Explain bool `json:"explain,omitempty"`
}

// ContextSource builds a request's policy context on demand (see
// Request.LazyContext). Every call returns the same content; callers do
// not modify the map.
type ContextSource interface {
	PolicyContext() map[string]any
}

// ContextMap is r's policy context: Context, or when it is nil the map
// LazyContext builds (nil without either).
func (r *Request) ContextMap() map[string]any {
	if r.Context == nil && r.LazyContext != nil {
		return r.LazyContext.PolicyContext()
	}
	return r.Context
}

// Step is one line of a decision's derivation (EXPLAIN ACCESS rows): the
// catalog's rendering of one requirement of the subject or the actor
// (principal, role, check, result, reason).
type Step = catalog.AccessStep

// Decision is the answer to a Request.
type Decision struct {
	Allowed  bool             `json:"allowed"`
	Reason   string           `json:"reason"`
	Revision catalog.Revision `json:"revision"`
	Steps    []Step           `json:"steps,omitempty"`
	// Contextual: a policy applies to the securable and was evaluated, so
	// the answer holds for this request's context (and time) only. When
	// false the grants alone decided it: the answer holds for any context
	// at this revision, and a gateway node may reuse it.
	Contextual bool `json:"contextual,omitempty"`
	// Guarded: guardrail policies apply to the securable (built-ins, or
	// Rego on results or in monitor mode): the call's payloads must go
	// through the gateway's guardrail stages (gateway/guardstage).
	Guarded bool `json:"guarded,omitempty"`
}

// ErrStale is returned when a decision at the requested revision cannot be
// made in time (fail closed).
var ErrStale = errors.New("enforce: the catalog revision requested is not available yet")

// Decider is what the authorization API serves. *Engine implements it.
type Decider interface {
	// Decide answers from the current snapshot. An unknown principal or
	// securable is a denial with a reason, never an error.
	Decide(ctx context.Context, r Request) Decision
	// DecideAt answers from a snapshot at revision >= atLeast, waiting for
	// it until ctx ends; then ErrStale.
	DecideAt(ctx context.Context, r Request, atLeast catalog.Revision) (Decision, error)
	// Revision is the revision of the current snapshot.
	Revision() catalog.Revision
	// Subscribe delivers the revision of every new snapshot (latest value
	// semantics: a slow receiver may skip revisions but always gets the
	// newest). cancel releases the subscription.
	Subscribe() (ch <-chan catalog.Revision, cancel func())
}
