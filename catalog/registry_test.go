package catalog

import "testing"

// TestTypeRegistry checks the registries the evaluator is built from: every
// privilege a type lists is known, USE privileges are known, containers
// exist, and no type nests more containers with a USE privilege than a
// securable record holds.
func TestTypeRegistry(t *testing.T) {
	for typ, ti := range typeRegistry {
		if ti.Type != typ {
			t.Errorf("%s: entry says %s", typ, ti.Type)
		}
		for _, p := range append(append([]Privilege(nil), ti.Privileges...), ti.UsePrivilege) {
			if p != "" && PrivilegeIndex(p) < 0 {
				t.Errorf("%s: unknown privilege %s", typ, p)
			}
		}
		uses := 0
		for par := ti.Parent; par != ""; par = typeRegistry[par].Parent {
			pti, ok := typeRegistry[par]
			if !ok {
				t.Fatalf("%s: unknown container type %s", typ, par)
			}
			if pti.UsePrivilege != "" {
				uses++
			}
		}
		if uses+1 > maxUses { // policies attach one level below the deepest type
			t.Errorf("%s: %d containers with a USE privilege, records hold %d", typ, uses, maxUses)
		}
		if ti.Home != nil && len(ti.Home) != ti.Depth()-1 {
			t.Errorf("%s: home %v does not name a container of depth %d", typ, ti.Home, ti.Depth()-1)
		}
	}
	all, notInAll := 0, 0
	for i, p := range privileges {
		if PrivilegeIndex(p.Privilege) != i || PrivilegeAt(i) != p.Privilege || p.Privilege.SQL() != p.SQL {
			t.Errorf("privilege %d: %+v", i, p)
		}
		if q, err := ParsePrivilege(p.SQL); err != nil || q != p.Privilege {
			t.Errorf("ParsePrivilege(%q) = %s, %v", p.SQL, q, err)
		}
		if p.All {
			all++
		}
		if p.NotInAll {
			notInAll++
		}
	}
	if all != 1 || notInAll < 1 {
		t.Errorf("%d ALL PRIVILEGES entries, %d not in it", all, notInAll)
	}
}
