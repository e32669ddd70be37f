package catalog_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering enforces the one-way import rule: cmd → gateway, sqlfront →
// enforce → catalog (schema is shared), and that only the packages that
// need cgo (DuckDB, pg_query) import them.
func TestLayering(t *testing.T) {
	const mod = "github.com/mandatehq/mandate"
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps=false", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	layer := func(pkg string) string {
		rest := strings.TrimPrefix(strings.TrimPrefix(pkg, mod), "/")
		return strings.SplitN(rest, "/", 2)[0]
	}
	// allowed[layer] = layers it may import
	allowed := map[string][]string{
		"catalog":  {"catalog", "schema"},
		"schema":   {"schema"},
		"enforce":  {"enforce", "catalog", "schema"},
		"sqlfront": {"sqlfront", "enforce", "catalog", "schema"},
		"gateway":  {"gateway", "enforce", "catalog", "schema"},
		"cmd":      {"cmd", "gateway", "sqlfront", "enforce", "catalog", "schema"},
	}
	cgoAllowed := map[string]bool{
		mod + "/catalog/duckstore":  true,
		mod + "/catalog/pgquery":    true, // pg_query: bounding lookups by request_id
		mod + "/sqlfront":           true,
		mod + "/sqlfront/systables": true, // pg_query: statement analysis
		mod + "/cmd/mandate":        true,
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		pkg, l := f[0], layer(f[0])
		ok, known := allowed[l]
		if !known {
			t.Errorf("package %s is outside the fixed top-level layout", pkg)
			continue
		}
		checked++
		for _, imp := range f[1:] {
			if strings.Contains(imp, "duckdb") || strings.Contains(imp, "pg_query_go") {
				if !cgoAllowed[pkg] {
					t.Errorf("%s imports %s: only %v may import cgo dependencies", pkg, imp, cgoAllowed)
				}
			}
			if !strings.HasPrefix(imp, mod+"/") {
				continue
			}
			il := layer(imp)
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == il
			}
			if !permitted {
				t.Errorf("%s (layer %s) imports %s (layer %s): imports flow cmd → gateway, sqlfront → enforce → catalog", pkg, l, imp, il)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d packages checked", checked)
	}
}
