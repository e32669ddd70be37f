package node_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/node"
)

// The catalog's definitions, in process and over the API, install in the
// limits engine and hold: FOR EACH USER 1 REQUESTS PER MINUTE lets one
// call per user through.
func TestLimitDefinitions(t *testing.T) {
	svc := llmCatalog(t)
	change(t, svc, func(tx *catalog.Tx) error {
		frontier := []string{"system", "ai", "frontier"}
		for _, err := range []error{
			tx.CreatePrincipal(catalog.KindGroup, "analysts", nil, false),
			tx.AddMember("analysts", catalog.KindUser, "alice@example.com"),
			tx.SetRateLimit(catalog.TypeModelService, frontier, catalog.LevelEachUser, "", 1, 0),
			tx.SetRateLimit(catalog.TypeModelService, frontier, catalog.LevelService, "", 1000, 1_000_000),
			tx.SetRateLimit(catalog.TypeConnection, []string{"system", "ai", "my_github_mcp"}, catalog.LevelGroup, "analysts", 5, 0),
			tx.CreateBudget(catalog.BudgetSpec{Name: "b", LimitUSD: "12.5", Level: catalog.LevelGroup, Principal: "analysts",
				ServicePath: frontier, Tags: []catalog.TagCond{{Key: "project", Value: "x"}}}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	cs := newCatalogServer(t, nil, svc, api.Options{})
	remote, err := node.NewLimits(cs.config())
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	fromAPI, err := remote.Definitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	local, err := api.LimitsResolver(svc)(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids [3]catalog.ID
	svc.Read(func(m *catalog.Model) {
		for i, n := range []string{"alice@example.com", "bob", "analysts"} {
			p, _ := m.PrincipalByName(n)
			ids[i] = p.ID
		}
	})
	for name, info := range map[string]*api.LimitsInfo{"remote": fromAPI, "local": local} {
		defs, err := node.LimitDefinitions(info)
		if err != nil {
			t.Fatal(err)
		}
		if len(defs.RateLimits) != 3 || len(defs.Budgets) != 1 || defs.Budgets[0].Limit != 12*limits.USD+limits.USD/2 ||
			len(defs.Members[ids[2]]) != 1 || defs.Members[ids[2]][0] != ids[0] {
			t.Fatalf("%s: %+v", name, defs)
		}
		lim := limits.New(limits.Options{Backend: limits.NewMemory(limits.SpendSourceFunc(
			func(context.Context, *limits.Budget, limits.Month) (limits.MonthSpend, error) {
				return limits.MonthSpend{}, nil
			}))})
		if err := lim.Apply(t.Context(), defs); err != nil {
			t.Fatalf("%s: Apply: %v", name, err)
		}
		call := func(user catalog.ID) error {
			_, err := lim.Reserve(t.Context(), &limits.Call{Kind: limits.ModelService, Securable: defs.RateLimits[0].Securable,
				Subject: user, InputTokens: 10, MaxTokens: 10})
			return err
		}
		if err := call(ids[0]); err != nil {
			t.Fatalf("%s: first call: %v", name, err)
		}
		var ref *limits.Refusal
		if err := call(ids[0]); !errors.As(err, &ref) || ref.Kind != limits.RateLimited {
			t.Errorf("%s: second call of the same user: %v", name, err)
		}
		if err := call(ids[1]); err != nil {
			t.Errorf("%s: another user's first call: %v", name, err)
		}
	}
}
