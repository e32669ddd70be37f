package guardstage

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sort"
	"sync"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/policy"
	"github.com/mandatehq/mandate/gateway/guard/builtin"
)

// Policy is one guardrail policy of a Set, prepared: a built-in compiled
// from its OPTIONS, or a Rego module (result phase, or monitor mode).
type Policy struct {
	Name string
	// On is the securable the policy is attached to.
	On  catalog.ID
	Def catalog.PolicyDef
	// Builtin is the compiled built-in (nil for Rego).
	Builtin *builtin.Prepared
	// Rego is the prepared module (nil for built-ins).
	Rego *policy.Compiled
	// Err is why the policy did not prepare: it then fails on every call
	// it applies to (denies in enforce mode).
	Err error
}

// Guardrail is the built-in's name, or "rego".
func (p *Policy) Guardrail() string {
	if p.Def.Rego() {
		return catalog.PolicyKindRego
	}
	return p.Def.Builtin()
}

// Set is the guardrail policies of one catalog revision, prepared: what
// the stage evaluates calls with. It is immutable and safe for concurrent
// use. Build it with a Preparer when the decision engine builds its
// snapshot (enforce.Options.Guardrails), never on a request.
type Set struct {
	rev catalog.Revision
	cs  *catalog.Snapshot
	// byOn holds the policies the stage runs (every built-in; Rego on the
	// result or in monitor mode), by the securable they are attached to.
	byOn map[catalog.ID][]*Policy
	// applying caches the policies that apply to a securable (attached
	// to it or its containers), outermost first.
	applying sync.Map // catalog.ID → []*Policy
}

// Revision is the catalog revision the set was prepared at.
func (s *Set) Revision() catalog.Revision { return s.rev }

// Len is the number of policies in the set.
func (s *Set) Len() int {
	n := 0
	for _, ps := range s.byOn {
		n += len(ps)
	}
	return n
}

// Catalog is the catalog snapshot the set was prepared from.
func (s *Set) Catalog() *catalog.Snapshot { return s.cs }

// Applying resolves a securable (type, full name as the pipeline has it)
// and returns its ID, its record and the policies that apply to it:
// attached to it, its schema or its catalog, outermost first, kinds in
// evaluation order. ok is false when the name does not resolve.
func (s *Set) Applying(t catalog.SecurableType, name string) (id catalog.ID, sec *catalog.Securable, ps []*Policy, ok bool) {
	id, res := s.cs.Resolve(t, name)
	if res != catalog.Resolved {
		return 0, nil, nil, false
	}
	sec, _ = s.cs.Securable(id)
	if len(s.byOn) == 0 {
		return id, sec, nil, true
	}
	if v, hit := s.applying.Load(id); hit {
		return id, sec, v.([]*Policy), true
	}
	chain := s.cs.Containers(id)
	for i := len(chain) - 1; i >= 0; i-- {
		ps = append(ps, s.byOn[chain[i]]...)
	}
	sort.SliceStable(ps, func(i, j int) bool { return order(ps[i]) < order(ps[j]) })
	s.applying.Store(id, ps)
	return id, sec, ps, true
}

// order is the evaluation order of a policy's kind: refusals that need
// the original content first (pins, schemas, destinations, injection,
// Rego), rewrites last (masking).
func order(p *Policy) int {
	switch p.Def.Builtin() {
	case builtin.PinTools:
		return 0
	case builtin.ValidateSchema:
		return 1
	case builtin.PreventExfiltration:
		return 2
	case builtin.BlockPromptInjection:
		return 3
	case "":
		return 4 // Rego
	case builtin.DetectSensitiveData:
		return 5
	}
	return 6
}

// Pins returns the tool pins of connection conn by tool name.
func (s *Set) Pins(conn catalog.ID) map[string]catalog.ToolPin {
	ps := s.cs.ToolPins(conn)
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]catalog.ToolPin, len(ps))
	for _, p := range ps {
		m[p.Name] = p
	}
	return m
}

// Preparer prepares the guardrail policies of successive catalog
// revisions, keeping each prepared policy under the hash of its name,
// kind, options and source, so that an unchanged policy is not prepared
// again. It keeps only the policies of the last Build. Safe for
// concurrent use.
type Preparer struct {
	mu    sync.Mutex
	cache map[[sha256.Size]byte]*Policy
}

// Hook is the Preparer as enforce.Options.Guardrails.
func (pr *Preparer) Hook(ctx context.Context, cs *catalog.Snapshot) any { return pr.Build(ctx, cs) }

// Build prepares the policies of cs the stage runs: every built-in
// guardrail, and Rego policies on the result or in monitor mode (Rego on
// the call in enforce mode is the decision engine's). A policy that does
// not prepare is kept with its error.
func (pr *Preparer) Build(ctx context.Context, cs *catalog.Snapshot) *Set {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	s := &Set{rev: cs.Revision(), cs: cs, byOn: map[catalog.ID][]*Policy{}}
	next := map[[sha256.Size]byte]*Policy{}
	for _, sec := range cs.Policies() {
		d := catalog.PolicyOf(sec)
		if d.AtAuthorization() {
			continue
		}
		k := sha256.Sum256([]byte(fmt.Sprintf("%d:%s\x00%s\x00%s\x00%s", len(sec.Name), sec.Name, d.Kind, d.OptionsJSON(), d.Source)))
		prev, ok := pr.cache[k]
		if !ok {
			prev = prepare(ctx, sec.Name, d)
		}
		next[k] = prev
		// The compiled part is shared; the policy's attachment, phases
		// and mode are this revision's.
		p := &Policy{Name: sec.Name, On: sec.Parent, Def: d, Builtin: prev.Builtin, Rego: prev.Rego, Err: prev.Err}
		s.byOn[sec.Parent] = append(s.byOn[sec.Parent], p)
	}
	pr.cache = next
	return s
}

func prepare(ctx context.Context, name string, d catalog.PolicyDef) *Policy {
	p := &Policy{Name: name, Def: d}
	if d.Rego() {
		p.Rego, p.Err = policy.Compile(ctx, name, d.Source)
		return p
	}
	p.Builtin, p.Err = builtin.Prepare(d.Builtin(), d.Options)
	return p
}
