package enforce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/policy"
)

// NewPolicyHook returns the PolicyHook that evaluates the Rego policies
// attached to the securable of a request and to its schema and catalog
// (enforce/policy). The compiled set is rebuilt once per catalog revision.
// Input: subject, actor, groups (the subject's transitive groups), securable,
// and from the request's context method, tool, arguments, source_ip and
// time (RFC 3339; now when absent). limit bounds each policy (0: 100 ms).
func NewPolicyHook(svc *catalog.Service, limit time.Duration) PolicyHook {
	h := &policyHook{svc: svc, limit: limit}
	return h.evaluate
}

type policyHook struct {
	svc   *catalog.Service
	limit time.Duration
	mu    sync.Mutex // serializes rebuilds
	set   atomic.Pointer[policy.Set]
}

func (h *policyHook) current(ctx context.Context, atLeast catalog.Revision) *policy.Set {
	if s := h.set.Load(); s != nil && s.Revision >= atLeast {
		return s
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.set.Load(); s != nil && s.Revision >= atLeast {
		return s
	}
	var s *policy.Set
	h.svc.Read(func(m *catalog.Model) { s = policy.Build(ctx, m) })
	h.set.Store(s)
	return s
}

func (h *policyHook) evaluate(ctx context.Context, snap *Snapshot, r Request) ([]string, error) {
	set := h.current(ctx, snap.Revision())
	if set.Len() == 0 {
		return nil, nil
	}
	// Names, containers and groups come from the snapshot the grants were
	// decided on, not from the live catalog: one consistent revision, and
	// no catalog lock per request.
	secNm, chain, names, ok := snap.PolicyTarget(&r)
	if !ok {
		return nil, fmt.Errorf("%s %s does not exist", strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
	}
	groups := make([]any, len(names))
	for i, g := range names {
		groups[i] = g
	}
	input := map[string]any{
		"subject":   r.Subject,
		"actor":     r.Actor,
		"groups":    groups,
		"securable": map[string]any{"type": string(r.Securable.Type), "name": secNm},
		"time":      time.Now().UTC().Format(time.RFC3339Nano),
	}
	for _, k := range []string{"method", "tool", "arguments", "source_ip", "time"} {
		if v, ok := r.Context[k]; ok {
			input[k] = v
		}
	}
	return set.Evaluate(ctx, chain, input, h.limit)
}
