package enforce

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// NewPolicyHook returns the PolicyHook that evaluates the Rego policies
// attached to the securable of a request and to its schema and catalog
// (enforce/policy). The engine prepares them when it builds a snapshot
// (unchanged policies are reused across revisions), so a request never
// compiles one. Input: subject, actor, groups (the subject's transitive
// groups), securable, and from the request's context method, tool,
// arguments, source_ip and time (RFC 3339; now when absent), and phase
// "call" (policies on the result run in the gateway). limit bounds
// each policy (0: 100 ms).
func NewPolicyHook(limit time.Duration) PolicyHook {
	return func(ctx context.Context, snap *Snapshot, r Request) ([]string, error) {
		set := snap.policies
		if set == nil || set.Len() == 0 {
			return nil, nil
		}
		// Names, containers and groups come from the snapshot the grants
		// were decided on, not from the live catalog: one consistent
		// revision, and no catalog lock per request.
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
			"phase":     "call",
		}
		rc := r.ContextMap()
		for _, k := range policyContextKeys {
			if v, ok := rc[k]; ok {
				input[k] = v
			}
		}
		return set.Evaluate(ctx, chain, input, limit)
	}
}

// policyContextKeys are the Request.Context keys a policy sees in its
// input. MCP calls: method, tool, arguments. LLM calls (model services):
// method (the endpoint, such as "chat.completions" or "messages"), model
// (the model service as the request named it), request_bytes (the body's
// size), max_tokens (the output cap, 0 when none), tools (the names of
// the tools offered to the model), tags (the request tags, an object of
// strings), stream (bool). Both: source_ip, time.
var policyContextKeys = []string{"method", "tool", "arguments", "source_ip", "time",
	"model", "request_bytes", "max_tokens", "tools", "tags", "stream"}
