package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

func TestParsePrices(t *testing.T) {
	p, err := catalog.ParsePrices("gpt-4.1=2.00/8.00/0.50, meta-llama/Llama-3-8B=0/0, claude-sonnet-4-5=3/15/0.3/3.75")
	if err != nil {
		t.Fatal(err)
	}
	if g := p["gpt-4.1"]; g.Input != 2 || g.Output != 8 || g.CachedInput == nil || *g.CachedInput != 0.5 || g.CacheWrite != nil {
		t.Errorf("gpt-4.1: %+v", g)
	}
	if c := p["claude-sonnet-4-5"]; c.CacheWrite == nil || *c.CacheWrite != 3.75 {
		t.Errorf("claude: %+v", c)
	}
	if _, ok := p["meta-llama/Llama-3-8B"]; !ok {
		t.Error("a model name with '/' is lost")
	}
	if got := catalog.FormatPrices(p); got != "claude-sonnet-4-5=3/15/0.3/3.75, gpt-4.1=2/8/0.5, meta-llama/Llama-3-8B=0/0" {
		t.Errorf("FormatPrices = %q", got)
	}
	for _, bad := range []string{"gpt", "gpt=1", "gpt=1/2/3/4/5/6", "=1/2", "gpt=1/x", "gpt=-1/2", "gpt=1e3/2", "gpt=1/2, gpt=1/2",
		"a b=1/2", "gpt=1234567/1", "gpt=0.1234567890/1", "gpt=.5/1", "gpt=5./1",
		"claude=3/15/0.3/3.75/x", "claude=3/15/0.3/3.75/-6", "claude=3/15/0.3/3.75/", "claude=3/15/0.3/3.75/1234567"} {
		if _, err := catalog.ParsePrices(bad); err == nil {
			t.Errorf("ParsePrices(%q) accepted", bad)
		}
	}
}

// TestParsePricesCacheWrite1h: the optional fifth field, the price of
// Anthropic's 1-hour cache writes, is read, rendered canonically and read
// back; the error names the five-field form.
func TestParsePricesCacheWrite1h(t *testing.T) {
	f := func(x float64) *float64 { return &x }
	for _, c := range []struct {
		in, canonical string
		want          catalog.Price
	}{
		{"claude=3/15/0.3/3.75", "claude=3/15/0.3/3.75", catalog.Price{Input: 3, Output: 15, CachedInput: f(0.3), CacheWrite: f(3.75)}},
		{"claude=3.00/15.00/0.30/3.75/6.00", "claude=3/15/0.3/3.75/6",
			catalog.Price{Input: 3, Output: 15, CachedInput: f(0.3), CacheWrite: f(3.75), CacheWrite1h: f(6)}},
		{" claude = 3/15/0.3/3.75/ 4.5 ", "claude=3/15/0.3/3.75/4.5",
			catalog.Price{Input: 3, Output: 15, CachedInput: f(0.3), CacheWrite: f(3.75), CacheWrite1h: f(4.5)}},
		{"claude=3/15/0.3/3.75/0", "claude=3/15/0.3/3.75/0",
			catalog.Price{Input: 3, Output: 15, CachedInput: f(0.3), CacheWrite: f(3.75), CacheWrite1h: f(0)}},
	} {
		p, err := catalog.ParsePrices(c.in)
		if err != nil {
			t.Errorf("ParsePrices(%q): %v", c.in, err)
			continue
		}
		got := p["claude"]
		eq := func(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
		if got.Input != c.want.Input || got.Output != c.want.Output || !eq(got.CachedInput, c.want.CachedInput) ||
			!eq(got.CacheWrite, c.want.CacheWrite) || !eq(got.CacheWrite1h, c.want.CacheWrite1h) {
			t.Errorf("ParsePrices(%q) = %+v", c.in, got)
		}
		s := catalog.FormatPrices(p)
		if s != c.canonical {
			t.Errorf("FormatPrices(ParsePrices(%q)) = %q, want %q", c.in, s, c.canonical)
		}
		if back, err := catalog.ParsePrices(s); err != nil || catalog.FormatPrices(back) != s {
			t.Errorf("%q does not read back: %v", s, err)
		}
	}
	_, err := catalog.ParsePrices("claude=3/15/0.3/3.75/6/7")
	if err == nil || !strings.Contains(err.Error(), "input/output[/cached_input[/cache_write[/cache_write_1h]]]") {
		t.Errorf("six fields: %v", err)
	}
}

// TestParseToolPrices: the tool_prices option's form, canonical rendering and errors.
func TestParseToolPrices(t *testing.T) {
	for _, tc := range []struct {
		in, canonical string
		err           string // a fragment of the error; "" when valid
	}{
		{in: "", canonical: ""},
		{in: "web_search=10.00", canonical: "web_search=10"},
		{in: " file_search = 2.50 , WEB_SEARCH=10 ", canonical: "web_search=10, file_search=2.5"},
		{in: "web_search=0", canonical: "web_search=0"},
		{in: "web_search=0.000000001", canonical: "web_search=0.000000001"},
		{in: "web_search", err: "want tool=price"},
		{in: "=1", err: "want tool=price"},
		{in: "code_execution=1", err: `unknown tool "code_execution"`},
		{in: "image_generation=1", err: "unknown tool"},
		{in: "web_search_20250305=1", err: "unknown tool"},
		{in: "web_search=1, web_search=2", err: "more than once"},
		{in: "web_search=-1", err: "invalid price"},
		{in: "web_search=1e3", err: "invalid price"},
		{in: "web_search=1234567", err: "invalid price"},
		{in: "web_search=", err: "invalid price"},
		{in: "web_search=1,", err: "want tool=price"},
		{in: strings.Repeat(" ", 1025) + "web_search=1", err: "longer than"},
	} {
		p, err := catalog.ParseToolPrices(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseToolPrices(%q) = %v, want an error with %q", tc.in, err, tc.err)
			} else if code := catalog.CodeOf(err); code != catalog.CodeInvalidArgument {
				t.Errorf("ParseToolPrices(%q): code %v", tc.in, code)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseToolPrices(%q): %v", tc.in, err)
			continue
		}
		if got := catalog.FormatToolPrices(p); got != tc.canonical {
			t.Errorf("FormatToolPrices(ParseToolPrices(%q)) = %q, want %q", tc.in, got, tc.canonical)
		}
		if again, err := catalog.ParseToolPrices(tc.canonical); err != nil || again != p {
			t.Errorf("the canonical form %q reads back as %+v, %v", tc.canonical, again, err)
		}
	}
	if p, _ := catalog.ParseToolPrices("file_search=2.5"); !p.Set[catalog.ToolFileSearch] || p.Set[catalog.ToolWebSearch] ||
		p.PerThousand[catalog.ToolFileSearch] != 2.5 {
		t.Errorf("file_search=2.5: %+v", p)
	}
}

func TestParseRoutes(t *testing.T) {
	r, err := catalog.ParseRoutes("destinations", `openai_prod/gpt-4.1=80, "Other Schema".p/meta-llama/Llama-3=20`, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != 2 || r[0].Weight != 80 || strings.Join(r[1].Provider, "|") != "Other Schema|p" || r[1].Model != "meta-llama/Llama-3" {
		t.Errorf("routes: %+v", r)
	}
	if r, err := catalog.ParseRoutes("destinations", "p/m", true); err != nil || r[0].Weight != 100 {
		t.Errorf("a single destination takes all: %+v %v", r, err)
	}
	for _, bad := range []struct {
		s       string
		weights bool
	}{{"p/m=50, q/m=40", true}, {"p/m=50, q/m", true}, {"p/m=101", true}, {"p/m=x", true}, {"p", true}, {"/m", true},
		{"p/", true}, {"p/m=10", false}, {"", false}, {"a.b.c.d/m", true}, {`"p/m`, true}} {
		if _, err := catalog.ParseRoutes("x", bad.s, bad.weights); err == nil {
			t.Errorf("ParseRoutes(%q, %v) accepted", bad.s, bad.weights)
		}
	}
}

func TestParseServiceTagsAndLifetimes(t *testing.T) {
	for in, want := range map[string]string{`{"team":"pay","cost-center":"42"}`: "pay", `team=pay, x=y`: "pay", ` team = pay `: "pay"} {
		tags, err := catalog.ParseServiceTags(in)
		if err != nil || tags["team"] != want {
			t.Errorf("ParseServiceTags(%q) = %v, %v", in, tags, err)
		}
	}
	many := make([]string, 17)
	for i := range many {
		many[i] = "k" + string(rune('a'+i)) + "=v"
	}
	for _, bad := range []string{`{"team":1}`, `{"a b":"x"}`, `team`, `a=1, a=2`, strings.Join(many, ","), `{"k":"` + strings.Repeat("v", 300) + `"}`, `[1]`} {
		if _, err := catalog.ParseServiceTags(bad); err == nil {
			t.Errorf("ParseServiceTags(%q) accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"90 days": 90 * 24 * time.Hour, "1 day": 24 * time.Hour, "12 hours": 12 * time.Hour,
		"2 weeks": 14 * 24 * time.Hour, "1 year": 365 * 24 * time.Hour, "720h": 720 * time.Hour, "30 MINUTES": 30 * time.Minute} {
		if d, err := catalog.ParseTokenLifetime(in); err != nil || d != want {
			t.Errorf("ParseTokenLifetime(%q) = %v, %v", in, d, err)
		}
	}
	for _, bad := range []string{"", "forever", "0 days", "-1 days", "10 years", "30s", "1 fortnight", "1.5 days"} {
		if _, err := catalog.ParseTokenLifetime(bad); err == nil {
			t.Errorf("ParseTokenLifetime(%q) accepted", bad)
		}
	}
	for in, want := range map[string]string{"500": "500", "25.50": "25.5", "0.000000001": "0.000000001", "007": "7", "9000000000": "9000000000"} {
		if got, err := catalog.ParseBudgetUSD(in); err != nil || got != want {
			t.Errorf("ParseBudgetUSD(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"0", "0.0", "-5", "1e3", "9000000000.5", "1.0000000001", "abc", ""} {
		if _, err := catalog.ParseBudgetUSD(bad); err == nil {
			t.Errorf("ParseBudgetUSD(%q) accepted", bad)
		}
	}
}

// A provider service cannot be dropped while a model service outside what
// is dropped routes to it (schema CASCADE included); dropping the model
// service first frees it.
func TestDropProviderInUse(t *testing.T) {
	svc := newService(t)
	admin := func(fn func(tx *catalog.Tx) error) error {
		_, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn)
		return err
	}
	if err := admin(func(tx *catalog.Tx) error {
		for _, err := range []error{
			tx.CreateCatalog("eng", false, nil),
			tx.CreateSchema([]string{"eng", "llm"}, false, nil),
			tx.CreateProviderService([]string{"eng", "llm", "p"}, [][2]string{{"provider", "openai"}, {"api_key", "k"}}, false, nil),
			tx.CreateModelService([]string{"eng", "llm", "inside"}, [][2]string{{"destinations", "eng.llm.p/m"}}, false, nil),
			tx.CreateModelService([]string{"system", "ai", "outside"}, [][2]string{{"destinations", "eng.llm.p/m"}}, false, nil),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, drop := range []struct {
		typ  catalog.SecurableType
		path []string
	}{{catalog.TypeProviderService, []string{"eng", "llm", "p"}}, {catalog.TypeSchema, []string{"eng", "llm"}}, {catalog.TypeCatalog, []string{"eng"}}} {
		err := admin(func(tx *catalog.Tx) error { return tx.Drop(drop.typ, drop.path, false, true) })
		if !catalog.IsCode(err, catalog.CodeDependent) || !strings.Contains(err.Error(), "routes to it") || (drop.typ != catalog.TypeProviderService && !strings.Contains(err.Error(), "system.ai.outside")) {
			t.Errorf("drop %s %v: %v", drop.typ, drop.path, err)
		}
	}
	if err := admin(func(tx *catalog.Tx) error {
		if err := tx.Drop(catalog.TypeModelService, []string{"system", "ai", "outside"}, false, false); err != nil {
			return err
		}
		return tx.Drop(catalog.TypeCatalog, []string{"eng"}, false, true)
	}); err != nil {
		t.Fatal(err)
	}
}

// A budget ON MODEL SERVICE goes with the service; rate limits go with
// what they limit; the exports carry the names the engine prints.
func TestLimitDefinitionsFollowTheirObjects(t *testing.T) {
	svc := newService(t)
	_, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, func(tx *catalog.Tx) error {
		for _, err := range []error{
			tx.CreatePrincipal(catalog.KindGroup, "g", nil, false),
			tx.CreatePrincipal(catalog.KindGroup, "inner", nil, false),
			tx.CreatePrincipal(catalog.KindUser, "u", nil, false),
			tx.CreatePrincipal(catalog.KindServicePrincipal, "sp", nil, false),
			tx.AddMember("g", catalog.KindGroup, "inner"),
			tx.AddMember("inner", catalog.KindUser, "u"),
			tx.AddMember("g", catalog.KindServicePrincipal, "sp"),
			tx.CreateProviderService([]string{"system", "ai", "p"}, [][2]string{{"provider", "openai"}, {"api_key", "k"}}, false, nil),
			tx.CreateModelService([]string{"system", "ai", "s"}, [][2]string{{"destinations", "p/m"}}, false, nil),
			tx.SetRateLimit(catalog.TypeModelService, []string{"system", "ai", "s"}, catalog.LevelGroup, "g", 10, 1000),
			tx.SetRateLimit(catalog.TypeModelService, []string{"system", "ai", "s"}, catalog.LevelGroup, "g", 20, 0),
			tx.CreateBudget(catalog.BudgetSpec{Name: "b", LimitUSD: "5", Level: catalog.LevelGroup, Principal: "g",
				ServicePath: []string{"system", "ai", "s"}, Tags: []catalog.TagCond{{Key: "project", Value: "x"}}}),
			tx.CreateBudget(catalog.BudgetSpec{Name: "all", LimitUSD: "100", Level: catalog.LevelEachUser}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Read(func(m *catalog.Model) {
		l := m.AllRateLimits()
		if len(l) != 1 || l[0].Requests != 20 || l[0].Tokens != 0 || l[0].PrincipalName != "g" || l[0].SecurableName != "system.ai.s" || l[0].Scope() != "GROUP g" {
			t.Errorf("rate limits (SET replaces): %+v", l)
		}
		b := m.Budgets()
		if len(b) != 2 || b[1].Name != "b" || b[1].ServiceName != "system.ai.s" || len(b[1].Tags) != 1 || b[1].LimitUSD != "5" || b[0].Level != catalog.LevelEachUser {
			t.Errorf("budgets: %+v", b)
		}
		g, _ := m.PrincipalByName("g")
		u, _ := m.PrincipalByName("u")
		sp, _ := m.PrincipalByName("sp")
		if got := m.TransitiveMembers(g.ID); len(got) != 2 || !((got[0] == u.ID && got[1] == sp.ID) || (got[0] == sp.ID && got[1] == u.ID)) {
			t.Errorf("members of g: %v", got)
		}
	})
	if _, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, func(tx *catalog.Tx) error {
		return tx.Drop(catalog.TypeModelService, []string{"system", "ai", "s"}, false, false)
	}); err != nil {
		t.Fatal(err)
	}
	svc.Read(func(m *catalog.Model) {
		if len(m.AllRateLimits()) != 0 || len(m.Budgets()) != 1 {
			t.Errorf("after DROP MODEL SERVICE: %+v %+v", m.AllRateLimits(), m.Budgets())
		}
	})
}
