package catalog

import (
	"encoding/json"
	"sort"
	"strings"
)

// A policy (TypePolicy) is either a Rego module or a built-in guardrail
// (system.ai.detect_sensitive_data, …) with its OPTIONS; either runs on the
// call, on the result or on both (its phases) and either enforces or only
// records what it would do (its mode). All of it lives in the policy's
// Options, so that no store needs a new column:
//
//	source   the Rego module (Rego policies)
//	kind     "rego" (also when absent: policies created before built-ins)
//	         or the built-in's full name, system.ai.<name>
//	phases   "call", "result" or "call,result" (absent: "call")
//	mode     "enforce" (also when absent) or "monitor"
//	options  a built-in's OPTIONS as a JSON object (names lower case)
//
// The catalog does not know the built-ins: the SQL front end checks a
// built-in's name and options before it creates the policy, and the
// gateway prepares them (gateway/guardstage).
const (
	PolicyKindOption    = "kind"
	PolicyPhasesOption  = "phases"
	PolicyModeOption    = "mode"
	PolicyOptionsOption = "options"

	// PolicyKindRego is the kind of a Rego policy.
	PolicyKindRego = "rego"
	// BuiltinPrefix starts the kind of a built-in guardrail.
	BuiltinPrefix = "system.ai."

	ModeEnforce = "enforce"
	ModeMonitor = "monitor"
)

// Policy limits: a built-in's OPTIONS.
const (
	MaxPolicyOptions     = 32
	MaxPolicyOptionBytes = 64 << 10
)

// PolicyDef is what a policy does: its kind, phases, mode and options.
type PolicyDef struct {
	// Kind is PolicyKindRego or the built-in's full name
	// (system.ai.detect_sensitive_data).
	Kind string
	// Call and Result are its phases: on the call (prompts, messages,
	// tool arguments) and on the result (model output, tool results).
	Call, Result bool
	// Monitor: record what it would do, change nothing.
	Monitor bool
	// Options are a built-in's OPTIONS (names lower case).
	Options map[string]string
	// Source is a Rego policy's module.
	Source string
}

// Rego reports whether the policy is a Rego module.
func (d PolicyDef) Rego() bool { return d.Kind == PolicyKindRego }

// Builtin is the built-in's bare name (detect_sensitive_data), "" for Rego.
func (d PolicyDef) Builtin() string {
	if d.Rego() {
		return ""
	}
	return strings.TrimPrefix(d.Kind, BuiltinPrefix)
}

// AtAuthorization reports whether the decision engine evaluates the
// policy when it authorizes a call: a Rego policy on the call that
// enforces. Every other policy (built-ins, Rego on the result, policies in
// monitor mode) runs in the gateway's guardrail stages.
func (d PolicyDef) AtAuthorization() bool { return d.Rego() && d.Call && !d.Monitor }

// Phases is the phases as SHOW POLICIES prints them: "call", "result" or
// "call, result".
func (d PolicyDef) Phases() string {
	switch {
	case d.Call && d.Result:
		return "call, result"
	case d.Result:
		return "result"
	}
	return "call"
}

// Mode is ModeEnforce or ModeMonitor.
func (d PolicyDef) Mode() string {
	if d.Monitor {
		return ModeMonitor
	}
	return ModeEnforce
}

// OptionsJSON is the options as a JSON object with sorted names ("" when
// there are none).
func (d PolicyDef) OptionsJSON() string {
	if len(d.Options) == 0 {
		return ""
	}
	b, _ := json.Marshal(d.Options) // maps marshal with sorted keys
	return string(b)
}

// PolicyOf reads the definition of policy p (a TypePolicy securable).
func PolicyOf(p *Securable) PolicyDef {
	o := p.Options
	d := PolicyDef{Kind: o[PolicyKindOption], Source: o[PolicySourceOption], Monitor: o[PolicyModeOption] == ModeMonitor}
	if d.Kind == "" {
		d.Kind = PolicyKindRego
	}
	switch o[PolicyPhasesOption] {
	case "result":
		d.Result = true
	case "call,result":
		d.Call, d.Result = true, true
	default:
		d.Call = true
	}
	if raw := o[PolicyOptionsOption]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &d.Options)
	}
	return d
}

// options is the stored form of d.
func (d PolicyDef) options() map[string]string {
	o := map[string]string{PolicyKindOption: d.Kind}
	switch {
	case d.Call && d.Result:
		o[PolicyPhasesOption] = "call,result"
	case d.Result:
		o[PolicyPhasesOption] = "result"
	default:
		o[PolicyPhasesOption] = "call"
	}
	o[PolicyModeOption] = d.Mode()
	if d.Rego() {
		o[PolicySourceOption] = d.Source
	} else if j := d.OptionsJSON(); j != "" {
		o[PolicyOptionsOption] = j
	}
	return o
}

// validate checks the shape of d; the front end has checked a built-in's
// name and options against the engines.
func (d *PolicyDef) validate(name string) error {
	if !d.Call && !d.Result {
		return Errorf(CodeInvalidArgument, "policy %s: a policy runs on the call, the result or both", QuoteIdent(name))
	}
	if d.Rego() {
		if strings.TrimSpace(d.Source) == "" {
			return Errorf(CodeInvalidArgument, "policy %s has no source", QuoteIdent(name))
		}
		if len(d.Options) > 0 {
			return Errorf(CodeInvalidArgument, "policy %s: a Rego policy takes no OPTIONS", QuoteIdent(name))
		}
		return nil
	}
	if !strings.HasPrefix(d.Kind, BuiltinPrefix) || len(d.Kind) == len(BuiltinPrefix) || len(d.Kind) > 255 {
		return Errorf(CodeInvalidArgument, "policy %s: unknown guardrail %q", QuoteIdent(name), d.Kind)
	}
	if d.Source != "" {
		return Errorf(CodeInvalidArgument, "policy %s: a built-in guardrail has no source", QuoteIdent(name))
	}
	if len(d.Options) > MaxPolicyOptions {
		return Errorf(CodeInvalidArgument, "policy %s: more than %d options", QuoteIdent(name), MaxPolicyOptions)
	}
	norm := make(map[string]string, len(d.Options))
	size := 0
	for k, v := range d.Options {
		lk := strings.ToLower(strings.TrimSpace(k))
		if lk == "" {
			return Errorf(CodeInvalidArgument, "policy %s: an option has no name", QuoteIdent(name))
		}
		if _, dup := norm[lk]; dup {
			return Errorf(CodeInvalidArgument, "policy %s: option %s given more than once", QuoteIdent(name), lk)
		}
		size += len(lk) + len(v)
		norm[lk] = v
	}
	if size > MaxPolicyOptionBytes {
		return Errorf(CodeInvalidArgument, "policy %s: options longer than %d bytes", QuoteIdent(name), MaxPolicyOptionBytes)
	}
	d.Options = norm
	return nil
}

// CreatePolicyDef attaches a policy (Rego or a built-in guardrail) to a
// securable. Needs the right to manage that securable. A Rego source is
// compiled, and a built-in's options checked, by the caller before this
// (outside the catalog's lock, and only once CheckCreatePolicy passed).
func (tx *Tx) CreatePolicyDef(name string, onType SecurableType, path []string, d PolicyDef) error {
	tx.audit(TypePolicy, QuoteIdent(name))
	on, err := tx.m.checkCreatePolicy(tx.caller, name, onType, path, d.Source)
	if err != nil {
		return err
	}
	if err := d.validate(name); err != nil {
		return err
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypePolicy, Parent: on.ID, Name: name, Owner: tx.caller.ID,
		Options: d.options(), Created: tx.svc.now().UTC()}})
	return nil
}

// CheckCreatePolicyOn reports whether caller may create policy name on the
// securable (every check of CreatePolicyDef but the definition's).
func (m *Model) CheckCreatePolicyOn(caller, name string, onType SecurableType, path []string) error {
	p, ok := m.PrincipalByName(caller)
	if !ok {
		return Errorf(CodePermissionDenied, "principal %s does not exist", QuoteIdent(caller))
	}
	_, err := m.checkCreatePolicy(p, name, onType, path, "")
	return err
}

// SetPolicyMode switches a policy between enforce and monitor mode
// (ALTER POLICY name SET MODE ENFORCE | MONITOR). Needs the right to
// manage what it is attached to.
func (tx *Tx) SetPolicyMode(name string, monitor bool) error {
	tx.audit(TypePolicy, QuoteIdent(name))
	p, ok := tx.m.PolicyByName(name)
	if !ok {
		return Errorf(CodeNotFound, "policy %s does not exist", QuoteIdent(name))
	}
	on := tx.m.securables[p.Parent]
	if err := tx.checkManage(on, "alter policy "+QuoteIdent(name)); err != nil {
		return err
	}
	d := PolicyOf(p)
	if d.Monitor == monitor {
		return nil
	}
	d.Monitor = monitor
	cp := *p
	cp.Options = d.options()
	tx.do(opPutSecurable{&cp})
	return nil
}

// AppliedPolicy is a policy that applies to a securable: attached to it or
// inherited from a container.
type AppliedPolicy struct {
	Policy *Securable
	Def    PolicyDef
	// On is what the policy is attached to; Inherited when that is a
	// container of the securable asked about.
	On        *Securable
	Inherited bool
}

// PolicyDefsFor returns the policies that apply to securable s, outermost
// container first, each with its definition.
func (m *Model) PolicyDefsFor(s ID) []AppliedPolicy {
	var out []AppliedPolicy
	for _, p := range m.PoliciesFor(s) {
		on := m.securables[p.Parent]
		out = append(out, AppliedPolicy{Policy: p, Def: PolicyOf(p), On: on, Inherited: p.Parent != s})
	}
	return out
}

// SortedOptionNames returns the names of a built-in's options, sorted.
func (d PolicyDef) SortedOptionNames() []string {
	out := make([]string, 0, len(d.Options))
	for k := range d.Options {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
