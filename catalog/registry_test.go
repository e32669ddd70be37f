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
		depth := 1 // the metastore
		for par := ti.Parent; par != ""; par = typeRegistry[par].Parent {
			if _, ok := typeRegistry[par]; !ok {
				t.Fatalf("%s: unknown container type %s", typ, par)
			}
			depth++
		}
		if depth+1 > maxDepth { // policies attach one level below
			t.Errorf("%s: lineage of %d with a policy below it, records hold %d", typ, depth+1, maxDepth)
		}
		if ti.Home != nil && len(ti.Home) != ti.Depth()-1 {
			t.Errorf("%s: home %v does not name a container of depth %d", typ, ti.Home, ti.Depth()-1)
		}
	}
	named := 0
	for _, ti := range typeRegistry {
		if ti.Named && ti.Depth() > 0 {
			named++
		}
	}
	if var_ := (securableIndex{}); named > len(var_.byType) {
		t.Errorf("%d named types, the snapshot's name index holds %d", named, len(var_.byType))
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
