package sqlfront

import (
	"context"
	"errors"
	"sort"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/policy"
	"github.com/mandatehq/mandate/sqlfront/parser"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// Guardrail statements: CREATE POLICY … [FOR phases] (AS rego | USING
// builtin OPTIONS (…)), ALTER POLICY … SET MODE, SHOW POLICIES, ALTER
// CONNECTION … APPROVE TOOLS, SHOW TOOLS.

// createPolicy runs CREATE POLICY. A Rego source is compiled, and a
// built-in's options checked (Config.CheckGuardrail), outside the
// catalog's write path and only for a caller who passed every other
// check: a refused caller gets (and the audit records) the privilege
// error, and makes the server compile nothing.
func (s *Session) createPolicy(x *parser.CreatePolicy) (*stmt, error) {
	t := secType(x.On.Type)
	path, err := s.path(t, x.On.Name)
	if err != nil {
		return nil, err
	}
	def := catalog.PolicyDef{Call: x.Call, Result: x.Result, Source: x.Source}
	builtin := len(x.Using) > 0
	if builtin {
		def.Kind = x.Using.String()
		def.Options = make(map[string]string, len(x.Options))
		for _, o := range x.Options {
			def.Options[strings.ToLower(o.Key)] = o.Value
		}
		if !x.Call && !x.Result {
			def.Call, def.Result = true, true // built-ins: both phases unless FOR says
		}
	} else {
		def.Kind = catalog.PolicyKindRego
		if !x.Call && !x.Result {
			def.Call = true // Rego: on the call, as before phases existed
		}
	}
	create := func(tx *catalog.Tx) error { return tx.CreatePolicyDef(x.Name.Name, t, path, def) }
	st := &stmt{s: s}
	st.run = func(ctx context.Context, _ []pgwire.Param, _ pgwire.RowWriter) (string, error) {
		var denied error
		if err := s.readModel(func(m *catalog.Model) {
			denied = m.CheckCreatePolicyOn(s.user, x.Name.Name, t, path)
		}); err != nil {
			return "", err
		}
		fn := create
		if denied == nil {
			var invalid error
			if builtin {
				kind, err := s.checkGuardrail(x.Using.String(), def.Options)
				if err != nil {
					invalid = err
				} else {
					def.Kind = kind
				}
			} else if err := policy.Check(ctx, x.Name.Name, x.Source); err != nil {
				invalid = catalog.Errorf(catalog.CodeInvalidArgument, "invalid policy: %s", err.Error())
			}
			if invalid != nil {
				// Still planned, so that a privilege error or a duplicate
				// name is reported first, and the refusal audited.
				fn = func(tx *catalog.Tx) error {
					if err := create(tx); err != nil {
						return err
					}
					return invalid
				}
			}
		}
		if err := s.change(ctx, st.autocommit, s.statement(x, fn)); err != nil {
			return "", err
		}
		return "CREATE POLICY", nil
	}
	return st, nil
}

// checkGuardrail checks a built-in's name and options with the gateway's
// engines (Config.CheckGuardrail) and returns its full name.
func (s *Session) checkGuardrail(name string, opts map[string]string) (string, error) {
	check := s.f.guardCheck
	if check == nil {
		return "", catalog.Errorf(catalog.CodeNotSupported, "built-in guardrails are not available in this process")
	}
	kind, err := check(name, opts)
	if err != nil {
		var ce *catalog.Error
		if errors.As(err, &ce) {
			return "", err
		}
		return "", catalog.Errorf(catalog.CodeInvalidArgument, "%s", err.Error())
	}
	return kind, nil
}

// policyCols are the columns of SHOW POLICIES.
var policyCols = textCols("name", "attached_to", "phases", "kind", "mode", "inherited_from", "options", "owner", "source")

// showPolicies lists policies: all of them, or those that apply to a
// securable (attached to it, or inherited from its schema or catalog,
// outermost first). Only policies on what the caller may see are listed.
func (s *Session) showPolicies(x *parser.ShowPolicies) (*stmt, error) {
	var (
		t    catalog.SecurableType
		path []string
		err  error
	)
	if x.On != nil {
		t = secType(x.On.Type)
		if path, err = s.path(t, x.On.Name); err != nil {
			return nil, err
		}
	}
	return s.read(policyCols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		var applied []catalog.AppliedPolicy
		if x.On != nil {
			sec, err := m.Lookup(t, path)
			if err != nil {
				return nil, err
			}
			applied = m.PolicyDefsFor(sec.ID)
		} else {
			for _, p := range m.Policies() {
				on, _ := m.Securable(p.Parent)
				applied = append(applied, catalog.AppliedPolicy{Policy: p, Def: catalog.PolicyOf(p), On: on})
			}
		}
		var rows [][]any
		for _, a := range applied {
			if !m.CanSee(me.ID, a.On.ID) {
				continue
			}
			attached := string(a.On.Type) + " " + a.On.FullName()
			var inherited any
			if a.Inherited {
				inherited = attached
			}
			rows = append(rows, []any{a.Policy.Name, attached, a.Def.Phases(), a.Def.Kind, a.Def.Mode(), inherited,
				nullIfEmpty(a.Def.OptionsJSON()), ownerName(m, a.Policy.Owner), nullIfEmpty(a.Def.Source)})
		}
		return rows, nil
	}), nil
}

// alterPolicyMode runs ALTER POLICY name SET MODE {ENFORCE | MONITOR}.
func (s *Session) alterPolicyMode(x *parser.AlterPolicyMode) (*stmt, error) {
	return s.write(x, "ALTER POLICY", func(tx *catalog.Tx) error { return tx.SetPolicyMode(x.Name.Name, x.Monitor) }), nil
}

// approveTools runs ALTER CONNECTION c APPROVE TOOLS [name, ...].
func (s *Session) approveTools(x *parser.ApproveTools) (*stmt, error) {
	p, err := s.path(catalog.TypeConnection, x.Connection)
	if err != nil {
		return nil, err
	}
	return s.write(x, "ALTER CONNECTION", func(tx *catalog.Tx) error { return tx.ApproveTools(p, x.Tools) }), nil
}

// showTools answers SHOW TOOLS ON CONNECTION c: every tool the gateway has
// seen on the connection, with its status against the approved pins.
func (s *Session) showTools(x *parser.ShowTools) (*stmt, error) {
	p, err := s.path(catalog.TypeConnection, x.Connection)
	if err != nil {
		return nil, err
	}
	cols := []pgwire.Column{{Name: "name", TypeOID: 25}, {Name: "status", TypeOID: 25}, {Name: "hash", TypeOID: 25},
		{Name: "approved_hash", TypeOID: 25}, {Name: "first_seen", TypeOID: oidTimestamptz},
		{Name: "last_seen", TypeOID: oidTimestamptz}, {Name: "approved_at", TypeOID: oidTimestamptz},
		{Name: "approved_by", TypeOID: 25}}
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		conn, err := m.Lookup(catalog.TypeConnection, p)
		if err != nil {
			return nil, err
		}
		if !m.CanSee(me.ID, conn.ID) {
			return nil, catalog.Errorf(catalog.CodeNotFound, "connection %s does not exist", conn.FullName())
		}
		pins := m.ToolPins(conn.ID)
		sort.Slice(pins, func(i, j int) bool { return pins[i].Name < pins[j].Name })
		rows := make([][]any, 0, len(pins))
		for _, t := range pins {
			var approvedAt any
			if !t.ApprovedAt.IsZero() {
				approvedAt = t.ApprovedAt
			}
			rows = append(rows, []any{t.Name, t.Status(), "sha256:" + t.Seen, prefixed(t.Approved), t.FirstSeen, t.LastSeen,
				approvedAt, nullIfEmpty(t.ApprovedBy)})
		}
		return rows, nil
	}), nil
}

func prefixed(hash string) any {
	if hash == "" {
		return nil
	}
	return "sha256:" + hash
}

// guardrailStatement runs the statements of this file; ok is false for
// any other.
func (s *Session) guardrailStatement(ast parser.Statement) (st *stmt, ok bool, err error) {
	switch x := ast.(type) {
	case *parser.CreatePolicy:
		st, err = s.createPolicy(x)
	case *parser.ShowPolicies:
		st, err = s.showPolicies(x)
	case *parser.AlterPolicyMode:
		st, err = s.alterPolicyMode(x)
	case *parser.ApproveTools:
		st, err = s.approveTools(x)
	case *parser.ShowTools:
		st, err = s.showTools(x)
	default:
		return nil, false, nil
	}
	return st, true, err
}
