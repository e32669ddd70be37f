package sqlfront

import (
	"encoding/json"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/parser"
)

// A catalog change that another replica can plan exactly as this one
// (Session.write: a function of the statement, the user and the current
// catalog) carries a forwarded form, which catalog.Options.Remote sends to
// the writer replica: the statement's canonical text (the parser's String)
// and the session's current catalog. The caller (user, client address,
// session, application) travels with it as catalog.Caller. Statements
// whose text holds a secret (a password, a secret-looking option) have no
// forwarded form: they never leave this process and are committed here.

// forwardForm is the forwarded form of a change; nil when its text holds
// secrets (redacted is its text as audited).
func (s *Session) forwardForm(ast parser.Statement, redacted string) []byte {
	text, ok := forwardable(ast, redacted)
	if !ok {
		return nil
	}
	b, err := json.Marshal(forwardForm{SQL: text, Catalog: s.catalog})
	if err != nil {
		return nil
	}
	return b
}

// forwardable returns a statement's canonical text, and whether it may
// leave this process: only when it equals the redacted text the audit
// record shows, i.e. it holds no secret (password, secret option).
func forwardable(ast parser.Statement, redacted string) (string, bool) {
	text := ast.String()
	return text, text == redacted
}

type forwardForm struct {
	SQL     string `json:"sql"`
	Catalog string `json:"catalog"`
}

// ForwardedStatement plans a statement another replica forwarded (its
// forwarded form and its caller) as that replica's session would have: as
// the caller's principal, with its privileges, in its current catalog; the
// audit record names the caller's client address, session and
// application. Only a change that has a forwarded form where it was sent
// is accepted.
func (f *Frontend) ForwardedStatement(c catalog.Caller, form []byte) (catalog.Statement, error) {
	var ff forwardForm
	if err := json.Unmarshal(form, &ff); err != nil || ff.SQL == "" {
		return catalog.Statement{}, catalog.Errorf(catalog.CodeInvalidArgument, "malformed forwarded statement")
	}
	if !parser.IsGovernance(ff.SQL) {
		return catalog.Statement{}, catalog.Errorf(catalog.CodeInvalidArgument, "a forwarded statement must be a governance statement")
	}
	ast, err := parser.ParseStatement(ff.SQL)
	if err != nil {
		return catalog.Statement{}, err
	}
	s := &Session{f: f, user: c.Principal, catalog: ff.Catalog, sourceIP: c.SourceIP, id: c.SessionID,
		params: map[string]string{"application_name": c.UserAgent}, forwarded: true}
	st, err := s.governance(ast)
	if err != nil {
		return catalog.Statement{}, err
	}
	if st.change == nil {
		return catalog.Statement{}, catalog.Errorf(catalog.CodeInvalidArgument, "statement %s cannot be forwarded", ast.Kind())
	}
	out := st.change()
	if _, ok := forwardable(ast, out.Req.Caller.Statement); !ok { // its text holds secrets: never sent
		return catalog.Statement{}, catalog.Errorf(catalog.CodeInvalidArgument, "statement %s cannot be forwarded", ast.Kind())
	}
	out.Forward = form
	out.Req.Caller.RequestID, out.Req.Caller.Via = c.RequestID, c.Via
	return out, nil
}
