package pipeline

import (
	"encoding/json"
	"sort"
)

// GuardrailOutcome is what one guardrail policy did on a call, in one
// phase: the call's audit row holds them (its guardrails column), so that
// the audit answers what a guardrail blocked, masked, or in monitor mode
// would have. It never carries matched content: entity types and counts,
// rule names, scores, tool names.
type GuardrailOutcome struct {
	Policy    string `json:"policy"`
	Guardrail string `json:"guardrail"` // the built-in's name, or "rego"
	Phase     string `json:"phase"`     // call, result
	Mode      string `json:"mode"`      // enforce, monitor
	// Action is what the policy did: deny, mask, rewrite (spotlight,
	// link removal), hide (tools/list), approve (tools pinned on first
	// sight), allow (findings an action 'monitor' only records), error
	// (the guardrail failed: denied in enforce mode); in monitor mode
	// would_deny, would_mask, would_rewrite, would_hide.
	Action string `json:"action"`
	// Entities counts findings by type (detect_sensitive_data: EMAIL,
	// CREDIT_CARD, …; prevent_exfiltration: destination; validate_schema:
	// violation).
	Entities map[string]int `json:"entities,omitempty"`
	Score    *float64       `json:"score,omitempty"` // block_prompt_injection
	Rules    []string       `json:"rules,omitempty"` // rule or kind names
	Tools    []string       `json:"tools,omitempty"` // pin_tools: the tools hidden or refused
	// Reason is the guardrail's explanation (no content).
	Reason string `json:"reason,omitempty"`
}

// maxGuardrailOutcomes bounds the outcomes one call records (a stream's
// pieces merge into them).
const maxGuardrailOutcomes = 64

// AddGuardrail records o on the call, merging it into an earlier outcome
// of the same policy, phase and action (entity counts add up, rules and
// tools are joined, the highest score is kept): a stream's pieces make one
// outcome per policy.
func (c *Call) AddGuardrail(o GuardrailOutcome) {
	for i := range c.Guardrails {
		g := &c.Guardrails[i]
		if g.Policy != o.Policy || g.Phase != o.Phase || g.Action != o.Action {
			continue
		}
		for k, v := range o.Entities {
			if g.Entities == nil {
				g.Entities = map[string]int{}
			}
			g.Entities[k] += v
		}
		if o.Score != nil && (g.Score == nil || *o.Score > *g.Score) {
			g.Score = o.Score
		}
		g.Rules = union(g.Rules, o.Rules)
		g.Tools = union(g.Tools, o.Tools)
		if g.Reason == "" {
			g.Reason = o.Reason
		}
		return
	}
	if len(c.Guardrails) < maxGuardrailOutcomes {
		c.Guardrails = append(c.Guardrails, o)
	}
}

func union(a, b []string) []string {
	for _, x := range b {
		found := false
		for _, y := range a {
			if x == y {
				found = true
				break
			}
		}
		if !found && len(a) < 32 {
			a = append(a, x)
		}
	}
	sort.Strings(a)
	return a
}

// GuardrailsJSON is the audit row's guardrails column: the outcomes as a
// JSON array, "" when there are none.
func (c *Call) GuardrailsJSON() string {
	if len(c.Guardrails) == 0 {
		return ""
	}
	b, err := json.Marshal(c.Guardrails)
	if err != nil {
		return ""
	}
	return string(b)
}
