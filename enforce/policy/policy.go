package policy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// Compiled is one prepared policy.
type Compiled struct {
	Name  string
	query rego.PreparedEvalQuery
}

// Check compiles a policy and returns the compiler's message on error, so
// that CREATE POLICY can refuse it. The module must declare a `deny` rule
// that produces a set of messages.
func Check(ctx context.Context, name, source string) error {
	_, err := Compile(ctx, name, source)
	return err
}

// Compile parses (Rego v1) and prepares a policy for evaluation.
func Compile(ctx context.Context, name, source string) (*Compiled, error) {
	mod, err := ast.ParseModuleWithOpts(name+".rego", source, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", name, compact(err))
	}
	hasDeny := false
	for _, r := range mod.Rules {
		if r.Head.Name.String() == "deny" || (len(r.Head.Reference) > 0 && r.Head.Reference[0].Value.String() == "deny") {
			hasDeny = true
		}
	}
	if !hasDeny {
		return nil, fmt.Errorf("policy %s: the module must define a `deny` rule (e.g. deny contains msg if { ... })", name)
	}
	q := mod.Package.Path.String() + ".deny"
	pq, err := rego.New(
		rego.Query(q),
		rego.ParsedModule(mod),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %s", name, compact(err))
	}
	return &Compiled{Name: name, query: pq}, nil
}

func compact(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Deny evaluates the policy with input and returns its deny messages
// (sorted). An evaluation error, a time-out, or a deny value that is not a
// set of strings is returned as an error: callers deny (fail closed).
func (c *Compiled) Deny(ctx context.Context, input map[string]any, limit time.Duration) ([]string, error) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	rs, err := c.query.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("policy %s timed out after %s", c.Name, limit)
		}
		return nil, fmt.Errorf("policy %s failed: %s", c.Name, compact(err))
	}
	var msgs []string
	for _, r := range rs {
		for _, e := range r.Expressions {
			set, ok := e.Value.([]any)
			if !ok {
				return nil, fmt.Errorf("policy %s: deny must be a set of messages, got %T", c.Name, e.Value)
			}
			for _, m := range set {
				s, ok := m.(string)
				if !ok {
					s = fmt.Sprint(m)
				}
				msgs = append(msgs, s)
			}
		}
	}
	sort.Strings(msgs)
	return msgs, nil
}
