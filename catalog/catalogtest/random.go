package catalogtest

import (
	"math/rand/v2"
	"strconv"

	"github.com/mandatehq/mandate/catalog"
)

// Random generates random catalogs for property tests: users, service
// principals, nested groups, catalogs, schemas and connections (some in
// system.ai), random owners including groups, grants of every privilege
// including ALL PRIVILEGES and MANAGE, then revokes, drops, renames,
// membership changes and dropped principals. Every choice comes from R.
type Random struct {
	R          *rand.Rand
	principals []*catalog.Principal
	securables []*catalog.Securable
}

// AllSecurables returns every securable breadth first from the metastore.
func AllSecurables(m *catalog.Model) []*catalog.Securable {
	out := []*catalog.Securable{m.Metastore()}
	for i := 0; i < len(out); i++ {
		out = append(out, m.Children(out[i].ID)...)
	}
	return out
}

// Path returns the name path of s (nil for the metastore).
func Path(m *catalog.Model, s *catalog.Securable) []string {
	var p []string
	for _, a := range m.Ancestors(s) {
		if a.Type != catalog.TypeMetastore {
			p = append([]string{a.Name}, p...)
		}
	}
	return p
}

func (g *Random) refresh(m *catalog.Model) {
	g.principals = m.Principals("")
	g.securables = AllSecurables(m)
}

func (g *Random) principal() *catalog.Principal { return g.principals[g.R.IntN(len(g.principals))] }

func (g *Random) group(m *catalog.Model) *catalog.Principal {
	gs := m.Principals(catalog.KindGroup)
	return gs[g.R.IntN(len(gs))]
}

func (g *Random) securable() *catalog.Securable { return g.securables[g.R.IntN(len(g.securables))] }

func (g *Random) pick(names ...string) string { return names[g.R.IntN(len(names))] }

func (g *Random) grant(tx *catalog.Tx, revoke bool) {
	m := tx.Model()
	s := g.securable()
	if _, ok := m.Securable(s.ID); !ok {
		return
	}
	ti, _ := catalog.LookupType(s.Type)
	if len(ti.Privileges) == 0 {
		return
	}
	priv := ti.Privileges[g.R.IntN(len(ti.Privileges))]
	p := g.principal()
	if _, ok := m.Principal(p.ID); !ok {
		return
	}
	if revoke {
		_ = tx.Revoke([]catalog.Privilege{priv}, s.Type, Path(m, s), []string{p.Name})
		return
	}
	_ = tx.Grant([]catalog.Privilege{priv}, s.Type, Path(m, s), []string{p.Name})
}

// Build creates the first version of a random catalog.
func (g *Random) Build(tx *catalog.Tx) error {
	r := g.R
	for i := range 1 + r.IntN(6) {
		if err := tx.CreatePrincipal(catalog.KindUser, g.pick("u", "User ")+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	for i := range r.IntN(4) {
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, "agent"+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	for i := range r.IntN(7) {
		if err := tx.CreatePrincipal(catalog.KindGroup, "g"+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	m := tx.Model()
	g.refresh(m)
	for range r.IntN(4 * len(g.principals)) {
		grp, mem := g.group(m), g.principal()
		_ = tx.AddMember(grp.Name, mem.Kind, mem.Name) // cycles and "account users" are refused
	}
	url := [][2]string{{"url", "https://example.com/mcp"}}
	for c := range 1 + r.IntN(3) {
		cat := g.pick("c", "C") + strconv.Itoa(c)
		if err := tx.CreateCatalog(cat, false, nil); err != nil {
			return err
		}
		for s := range r.IntN(3) {
			sch := "s" + strconv.Itoa(s)
			if err := tx.CreateSchema([]string{cat, sch}, false, nil); err != nil {
				return err
			}
			for x := range r.IntN(3) {
				if err := tx.CreateConnection([]string{cat, sch, "x" + strconv.Itoa(x)}, "MCP", url, false, nil); err != nil {
					return err
				}
			}
		}
	}
	for x := range r.IntN(3) {
		if err := tx.CreateConnection([]string{catalog.SystemCatalog, "ai", "t" + strconv.Itoa(x)}, "MCP", url, false, nil); err != nil {
			return err
		}
	}
	if r.IntN(2) == 0 {
		if err := tx.CreateSchema([]string{catalog.SystemCatalog, "extra"}, false, nil); err != nil {
			return err
		}
		if err := tx.CreateConnection([]string{catalog.SystemCatalog, "extra", "t0"}, "MCP", url, false, nil); err != nil {
			return err
		}
	}
	g.refresh(m)
	for _, s := range g.securables {
		if r.IntN(3) == 0 {
			if err := tx.SetOwner(s.Type, Path(m, s), g.principal().Name); err != nil {
				return err
			}
		}
	}
	g.refresh(m)
	for range r.IntN(12 * len(g.securables)) {
		g.grant(tx, false)
	}
	return nil
}

// Mutate changes the catalog: revokes, grants, membership changes, a drop,
// a rename, a dropped principal.
func (g *Random) Mutate(tx *catalog.Tx) error {
	r, m := g.R, tx.Model()
	g.refresh(m)
	for range r.IntN(3 * len(g.securables)) {
		g.grant(tx, r.IntN(2) == 0)
	}
	for range r.IntN(4) {
		grp, mem := g.group(m), g.principal()
		if r.IntN(2) == 0 {
			_ = tx.RemoveMember(grp.Name, mem.Kind, mem.Name)
		} else {
			_ = tx.AddMember(grp.Name, mem.Kind, mem.Name)
		}
	}
	if s := g.securable(); r.IntN(3) == 0 && !s.Builtin {
		if err := tx.Drop(s.Type, Path(m, s), false, true); err != nil {
			return err
		}
		g.refresh(m)
	}
	if s := g.securable(); r.IntN(3) == 0 && !s.Builtin && s.Type != catalog.TypeMetastore {
		if err := tx.Rename(s.Type, Path(m, s), s.Name+"_r"); err != nil {
			return err
		}
		g.refresh(m)
	}
	if p := g.principal(); r.IntN(4) == 0 && !p.Builtin {
		_ = tx.DropPrincipal(p.Kind, p.Name, false) // refused while it owns something
		g.refresh(m)
	}
	if r.IntN(3) == 0 {
		if err := tx.CreatePrincipal(catalog.KindGroup, "late"+strconv.Itoa(r.IntN(1000)), nil, true); err != nil {
			return err
		}
		g.refresh(m)
	}
	for range r.IntN(2 * len(g.securables)) {
		g.grant(tx, false)
	}
	return nil
}
