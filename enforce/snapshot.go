package enforce

import (
	"sync/atomic"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/policy"
)

// Snapshot is what the engine decides from: a catalog.Snapshot (the
// catalog's privilege evaluator on an immutable view at one revision, and
// the API's name index) with the engine's caches of its answers, and the
// Rego policies prepared for it. It is safe for concurrent use.
type Snapshot struct {
	cs  *catalog.Snapshot
	rev catalog.Revision

	// memo remembers answers of Allowed (see allowed); nil: off. Its
	// table is allocated by the first question, so a snapshot nobody asks
	// (a replica following a stream of catalog writes compiles one per
	// commit) costs no table.
	memo *memo
	// reasons remembers rendered reasons (see reasonMemo); nil: off.
	reasons *reasonMemo

	// policies are the catalog's Rego policies, prepared when the snapshot
	// was built (nil: none, or no policy hook); policyOn[id] says whether
	// a policy is attached to securable id or one of its containers.
	policies *policy.Set
	policyOn []bool
	// guardrails are the guardrail policies prepared for the snapshot
	// (Options.Guardrails; nil: none); guardOn[id] says whether one is
	// attached to securable id or one of its containers.
	guardrails any
	guardOn    []bool
}

// guardApplies reports whether a guardrail policy (one the gateway's
// guardrail stages run, not the decision engine) applies to securable n.
func (s *Snapshot) guardApplies(n catalog.ID) bool {
	return n >= 0 && int(n) < len(s.guardOn) && s.guardOn[n]
}

// Guardrails returns the guardrail policies prepared with the snapshot
// (Options.Guardrails), nil without the hook.
func (s *Snapshot) Guardrails() any { return s.guardrails }

// Catalog returns the catalog snapshot s decides from.
func (s *Snapshot) Catalog() *catalog.Snapshot { return s.cs }

// memoSize is the number of answers a snapshot remembers (256 KiB).
const memoSize = 1 << 15

// memo is a snapshot's table of answers, allocated on first use.
type memo struct {
	size  int // a power of two
	table atomic.Pointer[[]atomic.Uint64]
}

func newMemo(size int) *memo { return &memo{size: size} }

// slots returns the table, allocating it on the first call.
func (m *memo) slots() []atomic.Uint64 {
	if t := m.table.Load(); t != nil {
		return *t
	}
	t := make([]atomic.Uint64, m.size)
	if m.table.CompareAndSwap(nil, &t) {
		return t
	}
	return *m.table.Load()
}

// Limits of the memo's exact 63-bit keys: questions with larger IDs are
// answered without the memo.
const (
	memoPrincipalBits = 20
	memoNodeBits      = 18
	memoPrivBits      = 5
)

// Revision returns the catalog revision the snapshot was compiled at.
func (s *Snapshot) Revision() catalog.Revision { return s.rev }

// Compile builds a snapshot of m (no policies). The caller must hold m's
// read lock (catalog.Service.Read); the snapshot keeps no reference to m.
func Compile(m *catalog.Model) *Snapshot {
	cs := m.Snapshot()
	cs.Warm()
	return newSnapshot(cs, nil)
}

// newSnapshot wraps cs with the engine's caches and the policies prepared
// for it (nil: none).
func newSnapshot(cs *catalog.Snapshot, policies *policy.Set) *Snapshot {
	s := &Snapshot{cs: cs, rev: cs.Revision(), memo: newMemo(memoSize), reasons: new(reasonMemo)}
	if policies != nil && policies.Len() > 0 {
		s.policies = policies
		s.policyOn = make([]bool, cs.MaxID())
		// Containers are created before what they contain, so a
		// container's ID is smaller than its contents'.
		for id := range s.policyOn {
			sec, ok := cs.Securable(catalog.ID(id))
			if !ok {
				continue
			}
			s.policyOn[id] = policies.AttachedTo(sec.ID) ||
				(sec.Parent > 0 && int(sec.Parent) < id && s.policyOn[sec.Parent])
		}
	}
	guarded := map[catalog.ID]bool{}
	for _, p := range cs.Policies() {
		if !catalog.PolicyOf(p).AtAuthorization() {
			guarded[p.Parent] = true
		}
	}
	if len(guarded) > 0 {
		s.guardOn = make([]bool, cs.MaxID())
		for id := range s.guardOn {
			sec, ok := cs.Securable(catalog.ID(id))
			if !ok {
				continue
			}
			s.guardOn[id] = guarded[sec.ID] || (sec.Parent > 0 && int(sec.Parent) < id && s.guardOn[sec.Parent])
		}
	}
	return s
}

// policyApplies reports whether a policy is attached to securable n or to
// one of its containers.
func (s *Snapshot) policyApplies(n catalog.ID) bool {
	return n >= 0 && int(n) < len(s.policyOn) && s.policyOn[n]
}
