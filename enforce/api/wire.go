package api

import (
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// Paths of the API.
const (
	AuthorizePath = "/api/v1/authorize"
	WatchPath     = "/api/v1/watch"
	RevisionPath  = "/api/v1/revision"
)

// Check is one authorization question on the wire: an enforce.Request
// (subject, actor, privilege, securable, context) with options.
type Check struct {
	enforce.Request
	// AtLeastRevision asks for an answer from a snapshot at this revision
	// or newer (0: any).
	AtLeastRevision catalog.Revision `json:"at_least_revision,omitempty"`
}

// AuthorizeRequest is the body of POST /api/v1/authorize: either one
// Check (its fields at the top level) or Checks. In the batch form
// AtLeastRevision at the top level applies to every check.
type AuthorizeRequest struct {
	Check
	Checks *[]Check `json:"checks,omitempty"`
}

// BatchResponse answers the batch form, results in the order of the checks.
type BatchResponse struct {
	Results []enforce.Decision `json:"results"`
}

// RevisionEvent is the data of a watch event and the answer of
// GET /api/v1/revision.
type RevisionEvent struct {
	Revision catalog.Revision `json:"revision"`
}

// ErrorResponse is the body of every 4xx and 5xx answer. Revision is set
// on 503 answers to at_least_revision requests (the newest available).
type ErrorResponse struct {
	Error    string           `json:"error"`
	Revision catalog.Revision `json:"revision,omitempty"`
}

// normalize validates c and returns its request in canonical form:
// privilege in underscore spelling, securable type upper-cased.
func (c *Check) normalize() (enforce.Request, error) {
	r := c.Request
	if strings.TrimSpace(r.Subject) == "" {
		return r, fmt.Errorf("subject is required")
	}
	if strings.TrimSpace(string(r.Privilege)) == "" {
		return r, fmt.Errorf("privilege is required")
	}
	p, err := catalog.ParsePrivilege(string(r.Privilege))
	if err != nil {
		return r, fmt.Errorf("unknown privilege %q", r.Privilege)
	}
	r.Privilege = p
	if strings.TrimSpace(string(r.Securable.Type)) == "" {
		return r, fmt.Errorf("securable.type is required")
	}
	t := catalog.SecurableType(strings.ToUpper(strings.TrimSpace(string(r.Securable.Type))))
	ti, ok := catalog.LookupType(t)
	if !ok {
		return r, fmt.Errorf("unknown securable type %q", r.Securable.Type)
	}
	r.Securable.Type = t
	if ti.Named && strings.TrimSpace(r.Securable.Name) == "" {
		return r, fmt.Errorf("securable.name is required for a %s", strings.ToLower(string(t)))
	}
	if c.AtLeastRevision < 0 {
		return r, fmt.Errorf("at_least_revision must not be negative")
	}
	return r, nil
}

// isZero reports whether no single-check field was given.
func (c *Check) isZero() bool {
	return c.Subject == "" && c.Actor == "" && c.Privilege == "" && c.Securable == (enforce.SecurableRef{}) &&
		c.Context == nil && !c.Explain
}
