package sqlfront_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSecretLookingValuesRedacted: values of options named like secrets
// (also mistyped or unknown ones) never reach the audit log, even when the
// statement is refused; URLs carrying credentials are refused with 22023
// without repeating them, so SHOW CONNECTIONS and DESCRIBE cannot show them.
func TestSecretLookingValuesRedacted(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE CONNECTION ok TYPE MCP OPTIONS (url 'https://ok.example/mcp')`)
	secrets := []string{"S7-typo", "pw-opt", "rt-opt", "url-tok", "userinfo-pw", "alter-key", "frag-tok"}
	for _, tc := range []struct{ sql, want string }{
		{`CREATE CONNECTION typo TYPE MCP OPTIONS (url 'https://x.example/', auth_mode 'shared_principal', bearer_tokn 'S7-typo')`, "unknown connection option"},
		{`CREATE CONNECTION named TYPE MCP OPTIONS (url 'https://x.example/', password 'pw-opt', refresh_token = 'rt-opt')`, "unknown connection option"},
		{`CREATE CONNECTION urltok TYPE MCP OPTIONS (url 'https://x.example/mcp?token=url-tok')`, "must not carry credentials"},
		{`CREATE CONNECTION urluser TYPE MCP OPTIONS (url 'https://svc:userinfo-pw@x.example/mcp')`, "must not carry credentials"},
		{`ALTER CONNECTION ok SET OPTIONS (url 'https://ok.example/mcp?v=2&API_KEY=alter-key')`, "must not carry credentials"},
		{`CREATE CONNECTION frag TYPE MCP OPTIONS (url 'https://x.example/', token_endpoint 'https://x.example/t#access_token=frag-tok')`, "must not carry credentials"},
	} {
		_, err := admin.Exec(t.Context(), tc.sql)
		pe := wantSQLState(t, err, "22023")
		if !strings.Contains(pe.Message, tc.want) {
			t.Errorf("%s: %q, want %q", tc.sql, pe.Message, tc.want)
		}
		for _, s := range secrets {
			if strings.Contains(pe.Message+pe.Detail+pe.Hint, s) {
				t.Errorf("the error repeats %q: %+v", s, pe)
			}
		}
	}
	evs, err := f.Svc.Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range evs {
		text := fmt.Sprintf("%+v", e)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("audit event %s keeps %q: %s", e.Action, s, text)
			}
		}
		if e.StatusCode != 0 && strings.Contains(auditStatement(t, e), "********") {
			refused++
		}
	}
	if refused != 6 {
		t.Errorf("%d refused statements audited with masked values, want 6", refused)
	}
	for _, q := range []string{"SHOW CONNECTIONS", "DESCRIBE CONNECTION ok"} {
		for _, r := range queryStrings(t, admin, q) {
			for _, s := range secrets {
				if strings.Contains(strings.Join(r, " "), s) {
					t.Errorf("%s shows %q: %v", q, s, r)
				}
			}
		}
	}
}
