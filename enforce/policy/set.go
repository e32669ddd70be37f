package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// DefaultLimit bounds one policy evaluation.
const DefaultLimit = 100 * time.Millisecond

// Set is the policies of a catalog revision, prepared, by the securable
// each is attached to. It is immutable once built.
type Set struct {
	Revision catalog.Revision
	byOn     map[catalog.ID][]*entry
	n        int
}

type entry struct {
	name string
	c    *Compiled
	err  error // a policy that does not compile denies
}

// Cache prepares the policies of successive catalog revisions, keeping
// each prepared policy under the hash of its name and source, so that a
// policy unchanged since the previous revision is not compiled again. It
// keeps only the policies of the last Build. Safe for concurrent use.
type Cache struct {
	mu   sync.Mutex
	byID map[[sha256.Size]byte]*entry
}

func key(name, source string) [sha256.Size]byte {
	return sha256.Sum256([]byte(name + "\x00" + source))
}

// Build prepares policies (catalog POLICY securables: attached to their
// Parent, the Rego source in Options["source"]) for revision rev: those
// the decision engine evaluates when it authorizes a call (Rego, on the
// call, enforced: catalog.PolicyDef.AtAuthorization); built-in
// guardrails, Rego policies on the result and policies in monitor mode
// run in the gateway's guardrail stages. A policy that does not compile is
// kept as an error: evaluating it denies.
func (c *Cache) Build(ctx context.Context, rev catalog.Revision, policies []*catalog.Securable) *Set {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Set{Revision: rev, byOn: map[catalog.ID][]*entry{}}
	next := make(map[[sha256.Size]byte]*entry, len(policies))
	for _, p := range policies {
		if !catalog.PolicyOf(p).AtAuthorization() {
			continue
		}
		src := p.Options[catalog.PolicySourceOption]
		k := key(p.Name, src)
		e, ok := c.byID[k]
		if !ok {
			e = &entry{name: p.Name}
			e.c, e.err = Compile(ctx, p.Name, src)
		}
		next[k] = e
		s.byOn[p.Parent] = append(s.byOn[p.Parent], e)
		s.n++
	}
	c.byID = next
	return s
}

// Len is the number of policies in the set.
func (s *Set) Len() int { return s.n }

// AttachedTo reports whether a policy is attached to securable id itself.
func (s *Set) AttachedTo(id catalog.ID) bool { return len(s.byOn[id]) > 0 }

// Evaluate runs the policies attached to the securables of chain (the
// securable and its containers) with input and returns every deny message,
// each prefixed with its policy's name. An error means a policy failed or
// timed out: the caller must deny.
func (s *Set) Evaluate(ctx context.Context, chain []catalog.ID, input map[string]any, limit time.Duration) ([]string, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	var denies []string
	for i := len(chain) - 1; i >= 0; i-- { // outermost first
		for _, e := range s.byOn[chain[i]] {
			if e.err != nil {
				return nil, fmt.Errorf("policy %s does not compile: %w", e.name, e.err)
			}
			msgs, err := e.c.Deny(ctx, input, limit)
			if err != nil {
				return nil, err
			}
			for _, m := range msgs {
				denies = append(denies, e.name+": "+m)
			}
		}
	}
	return denies, nil
}

// Prepared returns the prepared policy named name (nil if absent or if it
// does not compile), for tests and diagnostics.
func (s *Set) Prepared(name string) *Compiled {
	for _, es := range s.byOn {
		for _, e := range es {
			if e.name == name {
				return e.c
			}
		}
	}
	return nil
}
