package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// DefaultLimit bounds one policy evaluation.
const DefaultLimit = 100 * time.Millisecond

// Set is every policy of a catalog revision, compiled, by the securable it
// is attached to. It is immutable once built.
type Set struct {
	Revision catalog.Revision
	byOn     map[catalog.ID][]entry
}

type entry struct {
	name string
	c    *Compiled
	err  error // a policy that does not compile denies
}

// Build compiles every policy of m. Call it under the catalog's read lock
// (catalog.Service.Read).
func Build(ctx context.Context, m *catalog.Model) *Set {
	s := &Set{Revision: m.Revision(), byOn: map[catalog.ID][]entry{}}
	for _, p := range m.Policies() {
		c, err := Compile(ctx, p.Name, p.Options[catalog.PolicySourceOption])
		s.byOn[p.Parent] = append(s.byOn[p.Parent], entry{name: p.Name, c: c, err: err})
	}
	return s
}

// Len is the number of policies in the set.
func (s *Set) Len() int {
	n := 0
	for _, e := range s.byOn {
		n += len(e)
	}
	return n
}

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
