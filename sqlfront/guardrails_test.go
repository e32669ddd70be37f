package sqlfront_test

import (
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

// TestShowAndApproveTools: the tools the gateway recorded (RecordTools)
// are listed with their status; APPROVE TOOLS pins the definition last
// seen; a changed definition shows as changed until approved again; each
// record is an audited catalog change.
func TestShowAndApproveTools(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://gh.example/mcp')`)
	var conn catalog.ID
	f.Svc.Read(func(m *catalog.Model) {
		c, err := m.Lookup(catalog.TypeConnection, []string{"system", "ai", "gh"})
		if err != nil {
			t.Fatal(err)
		}
		conn = c.ID
	})
	record := func(approveNew bool, tools ...catalog.ToolSeen) {
		t.Helper()
		if _, err := f.Svc.RecordTools(t.Context(), conn, tools, approveNew, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	show := func() string {
		var rows []string
		for _, r := range queryStrings(t, admin, `SHOW TOOLS ON CONNECTION gh`) {
			rows = append(rows, r[0]+" "+r[1]+" "+r[2]+" "+r[3]+" "+r[7])
		}
		return strings.Join(rows, "; ")
	}
	record(false, catalog.ToolSeen{Name: "search", Hash: "aaaa"}, catalog.ToolSeen{Name: "delete", Hash: "bbbb"})
	if got := show(); got != "delete new sha256:bbbb NULL NULL; search new sha256:aaaa NULL NULL" {
		t.Fatalf("SHOW TOOLS: %s", got)
	}
	mustExec(t, admin, `ALTER CONNECTION gh APPROVE TOOLS search`)
	if got := show(); got != "delete new sha256:bbbb NULL NULL; search approved sha256:aaaa sha256:aaaa admin" {
		t.Fatalf("SHOW TOOLS: %s", got)
	}
	record(false, catalog.ToolSeen{Name: "search", Hash: "cccc"}, catalog.ToolSeen{Name: "delete", Hash: "bbbb"})
	if got := show(); got != "delete new sha256:bbbb NULL NULL; search changed sha256:cccc sha256:aaaa admin" {
		t.Fatalf("SHOW TOOLS: %s", got)
	}
	mustExec(t, admin, `ALTER CONNECTION gh APPROVE TOOLS`)
	if got := show(); got != "delete approved sha256:bbbb sha256:bbbb admin; search approved sha256:cccc sha256:cccc admin" {
		t.Fatalf("SHOW TOOLS: %s", got)
	}
	// Seen on first sight with approve 'first_seen'.
	record(true, catalog.ToolSeen{Name: "list", Hash: "dddd"})
	if got := show(); !strings.Contains(got, "list approved sha256:dddd sha256:dddd first_seen") {
		t.Fatalf("SHOW TOOLS: %s", got)
	}
	// Seeing the same again changes nothing (no revision, no event).
	rev := f.Svc.Revision()
	record(false, catalog.ToolSeen{Name: "list", Hash: "dddd"})
	if f.Svc.Revision() != rev {
		t.Fatal("an unchanged tools/list changed the catalog")
	}
	seen := auditEvents(t, f, catalog.ActionToolSeen, "listed by alice")
	changed := auditEvents(t, f, catalog.ActionToolChanged, "tool search changed from sha256:aaaa")
	if len(seen) != 3 || len(changed) != 1 || changed[0].SecurableName != "system.ai.gh" {
		t.Fatalf("%d TOOL SEEN and %d TOOL CHANGED events: %+v", len(seen), len(changed), changed)
	}
	// The tools go with their connection, which needs no CASCADE.
	mustExec(t, admin, `DROP CONNECTION gh`)
}
