package sqlfront_test

import (
	"context"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront"
)

// recordingRemote records what the catalog would send to the writer
// replica, and lets it commit everything itself.
type recordingRemote struct {
	mu    sync.Mutex
	calls []forwardCall
}

type forwardCall struct {
	block bool
	stmts []catalog.Statement
}

func (r *recordingRemote) Forward(_ context.Context, stmts []catalog.Statement, block bool) (catalog.Revision, []catalog.AuditEvent, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, forwardCall{block, stmts})
	return 0, nil, catalog.ErrNotForwarded
}

// Changes planned from their statement alone carry a forwarded form
// (transaction blocks whole, at COMMIT), those whose text holds a secret
// none; the writer plans a forwarded form as its caller, with the
// caller's privileges, in the caller's current catalog.
func TestForwardedStatements(t *testing.T) {
	rec := &recordingRemote{}
	f := startFrontend(t, func(o *catalog.Options, _ *sqlfront.Config) { o.Remote = rec })
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER "fw@example.com"`,
		`CREATE USER "pw@example.com" WITH PASSWORD 'secret-pw-1'`,
		`CREATE CONNECTION fw_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`,
		`CREATE CONNECTION fw_secret TYPE MCP OPTIONS (url 'https://tools.example/mcp', auth_mode 'shared_principal', bearer_token 'tok-123')`,
		`BEGIN`, `COMMENT ON CONNECTION fw_tools IS 'one'`, `COMMENT ON CONNECTION fw_tools IS 'two'`, `COMMIT`)
	rec.mu.Lock()
	calls := rec.calls
	rec.mu.Unlock()
	var got []string
	for _, c := range calls {
		s := ""
		for _, st := range c.stmts {
			s += string(st.Forward) + ";"
		}
		if c.block {
			s = "block:" + s
		}
		got = append(got, s)
	}
	want := []string{
		`{"sql":"CREATE USER \"fw@example.com\"","catalog":"system"};`,
		`{"sql":"CREATE CONNECTION fw_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')","catalog":"system"};`,
		`block:{"sql":"COMMENT ON CONNECTION fw_tools IS 'one'","catalog":"system"};{"sql":"COMMENT ON CONNECTION fw_tools IS 'two'","catalog":"system"};`,
	}
	if len(got) != len(want) {
		t.Fatalf("forwarded:\n%q\nwant:\n%q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("forwarded %d = %s, want %s", i, got[i], want[i])
		}
	}

	grant := []byte(`{"sql":"GRANT USE_CONNECTION ON CONNECTION fw_tools TO \"fw@example.com\"","catalog":"system"}`)
	// As a user without MANAGE on the connection: refused.
	st, err := f.Fe.ForwardedStatement(catalog.Caller{Principal: "fw@example.com", SourceIP: "10.1.2.3", Via: "replica-b"}, grant)
	if err != nil {
		t.Fatal(err)
	}
	_, audit, err := f.Svc.CommitForwarded(t.Context(), []catalog.Statement{st}, false)
	if !catalog.IsCode(err, catalog.CodePermissionDenied) {
		t.Fatalf("forwarded GRANT as fw: %v; want permission denied", err)
	}
	// Its audit record, for the sending replica to record: as fw, from
	// fw's client, forwarded.
	if len(audit) != 1 || audit[0].UserIdentity != "fw@example.com" || audit[0].SourceIP != "10.1.2.3" || audit[0].Decision != "deny" ||
		audit[0].RequestParams != `{"forwarded_by":"replica-b","statement":"GRANT USE CONNECTION ON CONNECTION fw_tools TO \"fw@example.com\""}` {
		t.Fatalf("audit of the refused forwarded GRANT = %+v", audit)
	}
	// As admin: committed.
	st, err = f.Fe.ForwardedStatement(catalog.Caller{Principal: "admin", SourceIP: "10.1.2.3", Via: "replica-b"}, grant)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Svc.CommitForwarded(t.Context(), []catalog.Statement{st}, false); err != nil {
		t.Fatal(err)
	}
	if rows := queryStrings(t, admin, `SHOW GRANTS ON CONNECTION fw_tools`); len(rows) == 0 {
		t.Fatal("the forwarded GRANT is not visible")
	}
	// A form holding a secret, or not a catalog change, is refused.
	for _, form := range []string{
		`{"sql":"CREATE USER \"x@example.com\" WITH PASSWORD 'pw'","catalog":"system"}`,
		`{"sql":"SHOW GRANTS ON CONNECTION fw_tools","catalog":"system"}`,
		`{"sql":"SELECT 1","catalog":"system"}`,
		`not json`,
	} {
		if _, err := f.Fe.ForwardedStatement(catalog.Caller{Principal: "admin"}, []byte(form)); err == nil {
			t.Errorf("ForwardedStatement(%s) accepted", form)
		}
	}
}
