package sqlfront

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/parser"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

const masked = catalog.Redacted

func names(q parser.QName) []string {
	out := make([]string, len(q))
	for i, id := range q {
		out[i] = id.Name
	}
	return out
}

func idents(ids []parser.Ident) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Name
	}
	return out
}

func secType(t parser.ObjectType) catalog.SecurableType {
	switch t {
	case parser.ObjCatalog:
		return catalog.TypeCatalog
	case parser.ObjSchema:
		return catalog.TypeSchema
	case parser.ObjConnection:
		return catalog.TypeConnection
	case parser.ObjMetastore:
		return catalog.TypeMetastore
	}
	return catalog.SecurableType(t)
}

func principalKind(t parser.ObjectType) catalog.PrincipalKind {
	switch t {
	case parser.ObjUser:
		return catalog.KindUser
	case parser.ObjGroup:
		return catalog.KindGroup
	case parser.ObjServicePrincipal:
		return catalog.KindServicePrincipal
	}
	return ""
}

func options(opts []parser.Option) [][2]string {
	out := make([][2]string, len(opts))
	for i, o := range opts {
		out[i] = [2]string{o.Key, o.Value}
	}
	return out
}

// path resolves a statement's name in the session's current catalog.
func (s *Session) path(t catalog.SecurableType, q parser.QName) ([]string, error) {
	return catalog.ResolveName(t, names(q), s.catalog)
}

func (s *Session) verifier(pw *string) (*string, error) {
	if pw == nil {
		return nil, nil
	}
	if *pw == "" {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "password must not be empty")
	}
	v, err := pgwire.MakeVerifier(*pw)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// statement describes one catalog change of a statement for the catalog: the
// audit record (with the statement's secrets redacted) and fn.
func (s *Session) statement(ast parser.Statement, fn func(tx *catalog.Tx) error) catalog.Statement {
	return catalog.Statement{
		Req: catalog.WriteRequest{Caller: s.caller(parser.Redact(ast.String())), Action: ast.Kind(), SQLState: sqlState},
		Fn:  fn,
	}
}

// write builds a statement that runs fn as one catalog change (in the
// session's transaction, see txblock.go).
//
// The change is a function of the statement, the session's user and its
// current catalog only, so another replica plans it alike from its text:
// it carries a forwarded form (see forwarded.go) when the catalog may
// send it to a writer replica, unless its text holds secrets.
func (s *Session) write(ast parser.Statement, tag string, fn func(tx *catalog.Tx) error) *stmt {
	st := &stmt{s: s}
	st.change = func() catalog.Statement {
		c := s.statement(ast, fn)
		if s.f.cat.Forwards() && !s.forwarded {
			c.Forward = s.forwardForm(ast, c.Req.Caller.Statement)
		}
		return c
	}
	st.run = func(ctx context.Context, _ []pgwire.Param, _ pgwire.RowWriter) (string, error) {
		if err := s.change(ctx, st.autocommit, st.change()); err != nil {
			return "", err
		}
		return tag, nil
	}
	return st
}

// read builds a statement that answers from the catalog as the session's
// transaction sees it.
func (s *Session) read(cols []pgwire.Column, fn func(m *catalog.Model, me *catalog.Principal) ([][]any, error)) *stmt {
	return &stmt{s: s, cols: cols, run: func(ctx context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
		var (
			rows [][]any
			err  error
		)
		if rerr := s.readModel(func(m *catalog.Model) {
			me, ok := m.PrincipalByName(s.user)
			if !ok {
				err = catalog.Errorf(catalog.CodePermissionDenied, "principal %s no longer exists", catalog.QuoteIdent(s.user))
				return
			}
			rows, err = fn(m, me)
		}); rerr != nil {
			return "", rerr
		}
		if err != nil {
			return "", err
		}
		for _, r := range rows {
			if err := ctx.Err(); err != nil {
				return "", err
			}
			if err := w.WriteRow(r); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("SELECT %d", len(rows)), nil
	}}
}

func (s *Session) governance(ast parser.Statement) (*stmt, error) {
	if st, ok, err := s.serviceStatement(ast); ok {
		return st, err
	}
	if st, ok, err := s.guardrailStatement(ast); ok {
		return st, err
	}
	switch x := ast.(type) {
	case *parser.CreateCatalog:
		return s.write(x, "CREATE CATALOG", func(tx *catalog.Tx) error {
			return tx.CreateCatalog(x.Name.Name, x.IfNotExists, x.Comment)
		}), nil
	case *parser.CreateSchema:
		p, err := s.path(catalog.TypeSchema, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "CREATE SCHEMA", func(tx *catalog.Tx) error { return tx.CreateSchema(p, x.IfNotExists, x.Comment) }), nil
	case *parser.CreateConnection:
		p, err := s.path(catalog.TypeConnection, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "CREATE CONNECTION", func(tx *catalog.Tx) error {
			return tx.CreateConnection(p, x.Type, options(x.Options), x.IfNotExists, x.Comment)
		}), nil
	case *parser.Drop:
		if x.Type == parser.ObjPolicy {
			return s.write(x, "DROP POLICY", func(tx *catalog.Tx) error { return tx.DropPolicy(x.Name[0].Name, x.IfExists) }), nil
		}
		if k := principalKind(x.Type); k != "" {
			if len(x.Name) != 1 {
				return nil, catalog.Errorf(catalog.CodeInvalidArgument, "a %s name has one part", strings.ToLower(string(x.Type)))
			}
			return s.write(x, "DROP "+string(x.Type), func(tx *catalog.Tx) error {
				return tx.DropPrincipal(k, x.Name[0].Name, x.IfExists)
			}), nil
		}
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "DROP "+string(x.Type), func(tx *catalog.Tx) error { return tx.Drop(t, p, x.IfExists, x.Cascade) }), nil
	case *parser.AlterOwner:
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "ALTER "+string(x.Type), func(tx *catalog.Tx) error { return tx.SetOwner(t, p, x.Owner.Name) }), nil
	case *parser.AlterRename:
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "ALTER "+string(x.Type), func(tx *catalog.Tx) error { return tx.Rename(t, p, x.NewName.Name) }), nil
	case *parser.AlterConnectionOptions:
		p, err := s.path(catalog.TypeConnection, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "ALTER CONNECTION", func(tx *catalog.Tx) error { return tx.SetOptions(p, options(x.Options)) }), nil
	case *parser.CommentOn:
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "COMMENT", func(tx *catalog.Tx) error { return tx.SetComment(t, p, x.Comment) }), nil
	case *parser.CreatePrincipal:
		v, err := s.verifier(x.Password)
		if err != nil {
			return nil, err
		}
		k := principalKind(x.Type)
		return s.write(x, "CREATE "+string(x.Type), func(tx *catalog.Tx) error {
			return tx.CreatePrincipal(k, x.Name.Name, v, x.IfNotExists)
		}), nil
	case *parser.AlterPassword:
		v, err := s.verifier(x.Password)
		if err != nil {
			return nil, err
		}
		k := principalKind(x.Type)
		return s.write(x, "ALTER "+string(x.Type), func(tx *catalog.Tx) error { return tx.SetPassword(k, x.Name.Name, v) }), nil
	case *parser.AlterGroupMembers:
		k := principalKind(x.MemberType)
		return s.write(x, "ALTER GROUP", func(tx *catalog.Tx) error {
			for _, m := range x.Members {
				var err error
				if x.Add {
					err = tx.AddMember(x.Group.Name, k, m.Name)
				} else {
					err = tx.RemoveMember(x.Group.Name, k, m.Name)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}), nil
	case *parser.Grant:
		t := secType(x.On.Type)
		p, err := s.path(t, x.On.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "GRANT", func(tx *catalog.Tx) error { return tx.Grant(x.Privileges, t, p, idents(x.To)) }), nil
	case *parser.Revoke:
		t := secType(x.On.Type)
		p, err := s.path(t, x.On.Name)
		if err != nil {
			return nil, err
		}
		return s.write(x, "REVOKE", func(tx *catalog.Tx) error { return tx.Revoke(x.Privileges, t, p, idents(x.From)) }), nil
	case *parser.ShowGrants:
		return s.showGrants(x)
	case *parser.ShowObjects:
		return s.showObjects(x)
	case *parser.Describe:
		return s.describe(x)
	case *parser.ShowRevision:
		return &stmt{s: s, cols: []pgwire.Column{{Name: "revision", TypeOID: oidInt8}},
			run: func(_ context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
				return "SELECT 1", w.WriteRow([]any{int64(s.f.cat.Revision())})
			}}, nil
	case *parser.ExplainAccess:
		return s.explainAccess(x)
	case *parser.ShowConnectionStatus:
		return s.showConnectionStatus(x)
	}
	return nil, catalog.Errorf(catalog.CodeNotSupported, "statement %s is not supported", ast.Kind())
}

var grantCols = textCols("principal", "action_type", "object_type", "object_key", "inherited_from")

type grantRow struct {
	principal, action, objType, objKey string
	inherited                          any
	depth                              int
}

func sortGrantRows(rows []grantRow) [][]any {
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.depth != b.depth {
			return a.depth < b.depth
		}
		if a.principal != b.principal {
			return a.principal < b.principal
		}
		if a.action != b.action {
			return a.action < b.action
		}
		if a.objType != b.objType {
			return a.objType < b.objType
		}
		return a.objKey < b.objKey
	})
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = []any{r.principal, r.action, r.objType, r.objKey, r.inherited}
	}
	return out
}

func (s *Session) showGrants(x *parser.ShowGrants) (*stmt, error) {
	if x.To != nil {
		who := x.To.Name
		return s.read(grantCols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			p, ok := m.PrincipalByName(who)
			if !ok {
				return nil, catalog.Errorf(catalog.CodeNotFound, "principal %s does not exist", catalog.QuoteIdent(who))
			}
			all := m.IsAdmin(me.ID) || m.InClosure(me.ID, p.ID)
			var rows []grantRow
			for sid, set := range m.GrantsTo(p.ID) {
				sec, _ := m.Securable(sid)
				if !all {
					if ok, _ := m.CanManage(me.ID, sid); !ok {
						continue
					}
				}
				for _, pr := range set.List() {
					rows = append(rows, grantRow{p.Name, pr.SQL(), string(sec.Type), sec.FullName(), nil, 0})
				}
			}
			return sortGrantRows(rows), nil
		}), nil
	}
	t := secType(x.On.Type)
	path, err := s.path(t, x.On.Name)
	if err != nil {
		return nil, err
	}
	return s.read(grantCols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		sec, err := m.Lookup(t, path)
		if err != nil {
			return nil, err
		}
		var filter *catalog.Principal
		if x.Principal != nil {
			p, ok := m.PrincipalByName(x.Principal.Name)
			if !ok {
				return nil, catalog.Errorf(catalog.CodeNotFound, "principal %s does not exist", catalog.QuoteIdent(x.Principal.Name))
			}
			filter = p
		}
		all, _ := m.CanManage(me.ID, sec.ID)
		var rows []grantRow
		for depth, a := range m.Ancestors(sec) {
			if a.Type == catalog.TypeMetastore && sec.Type != catalog.TypeMetastore {
				break
			}
			var inh any
			if depth > 0 {
				inh = string(a.Type) + " " + a.FullName()
			}
			for pid, set := range m.GrantsOn(a.ID) {
				if filter != nil && pid != filter.ID {
					continue
				}
				if !all && !m.InClosure(me.ID, pid) {
					continue
				}
				p, _ := m.Principal(pid)
				for _, pr := range set.List() {
					rows = append(rows, grantRow{p.Name, pr.SQL(), string(a.Type), a.FullName(), inh, depth})
				}
			}
		}
		return sortGrantRows(rows), nil
	}), nil
}

func ownerName(m *catalog.Model, id catalog.ID) string {
	if p, ok := m.Principal(id); ok {
		return p.Name
	}
	return ""
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Session) showObjects(x *parser.ShowObjects) (*stmt, error) {
	switch x.What {
	case "CATALOGS":
		return s.read(textCols("catalog", "owner", "comment"), func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			var rows [][]any
			for _, c := range m.Children(m.Metastore().ID) {
				if c.Type == catalog.TypeCatalog && m.CanSee(me.ID, c.ID) {
					rows = append(rows, []any{c.Name, ownerName(m, c.Owner), nullIfEmpty(c.Comment)})
				}
			}
			return rows, nil
		}), nil
	case "SCHEMAS":
		cat := s.catalog
		if len(x.In) == 1 {
			cat = x.In[0].Name
		} else if len(x.In) > 1 {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument, "SHOW SCHEMAS IN takes a catalog name")
		}
		return s.read(textCols("catalog", "schema", "owner", "comment"), func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			c, err := m.Lookup(catalog.TypeCatalog, []string{cat})
			if err != nil {
				return nil, err
			}
			var rows [][]any
			for _, sc := range m.Children(c.ID) {
				if sc.Type == catalog.TypeSchema && m.CanSee(me.ID, sc.ID) {
					rows = append(rows, []any{c.Name, sc.Name, ownerName(m, sc.Owner), nullIfEmpty(sc.Comment)})
				}
			}
			return rows, nil
		}), nil
	case "CONNECTIONS":
		in := names(x.In)
		if len(in) > 2 {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument, "SHOW CONNECTIONS IN takes a catalog or catalog.schema")
		}
		return s.read(textCols("name", "type", "url", "auth_mode", "owner", "comment"), func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			var roots []*catalog.Securable
			switch len(in) {
			case 0:
				roots = []*catalog.Securable{m.Metastore()}
			case 1:
				c, err := m.Lookup(catalog.TypeCatalog, in)
				if err != nil {
					return nil, err
				}
				roots = []*catalog.Securable{c}
			case 2:
				sc, err := m.Lookup(catalog.TypeSchema, in)
				if err != nil {
					return nil, err
				}
				roots = []*catalog.Securable{sc}
			}
			var rows [][]any
			var walk func(n *catalog.Securable)
			walk = func(n *catalog.Securable) {
				for _, c := range m.Children(n.ID) {
					if c.Type == catalog.TypeConnection {
						if m.CanSee(me.ID, c.ID) {
							rows = append(rows, []any{c.FullName(), c.Options["type"], catalog.RedactURL(c.Options[catalog.OptURL]), c.Options[catalog.OptAuthMode],
								ownerName(m, c.Owner), nullIfEmpty(c.Comment)})
						}
						continue
					}
					walk(c)
				}
			}
			for _, r := range roots {
				walk(r)
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i][0].(string) < rows[j][0].(string) })
			return rows, nil
		}), nil
	case "USERS", "GROUPS", "SERVICE PRINCIPALS":
		kind := map[string]catalog.PrincipalKind{"USERS": catalog.KindUser, "GROUPS": catalog.KindGroup, "SERVICE PRINCIPALS": catalog.KindServicePrincipal}[x.What]
		cols := textCols("name", "admin", "groups")
		if kind == catalog.KindGroup {
			cols = textCols("name", "admin", "members", "comment")
		}
		cols[1].TypeOID = 16
		return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			var rows [][]any
			for _, p := range m.Principals(kind) {
				if kind == catalog.KindGroup {
					rows = append(rows, []any{p.Name, p.Admin, joinNames(m.Members(p.ID)), nullIfEmpty(p.Comment)})
				} else {
					rows = append(rows, []any{p.Name, p.Admin, joinNames(m.GroupsOf(p.ID))})
				}
			}
			return rows, nil
		}), nil
	}
	return nil, catalog.Errorf(catalog.CodeNotSupported, "SHOW %s is not supported", x.What)
}

func joinNames(ps []*catalog.Principal) string {
	n := make([]string, len(ps))
	for i, p := range ps {
		n[i] = catalog.QuoteIdent(p.Name)
	}
	return strings.Join(n, ", ")
}

func (s *Session) describe(x *parser.Describe) (*stmt, error) {
	cols := textCols("info_name", "info_value")
	if k := principalKind(x.Type); k != "" {
		if len(x.Name) != 1 {
			return nil, catalog.Errorf(catalog.CodeInvalidArgument, "a %s name has one part", strings.ToLower(string(x.Type)))
		}
		name := x.Name[0].Name
		return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
			p, ok := m.PrincipalByName(name)
			if !ok {
				return nil, catalog.Errorf(catalog.CodeNotFound, "%s %s does not exist", strings.ToLower(string(k)), catalog.QuoteIdent(name))
			}
			if p.Kind != k {
				return nil, catalog.Errorf(catalog.CodeWrongObjectType, "%s is a %s, not a %s", catalog.QuoteIdent(name),
					strings.ToLower(string(p.Kind)), strings.ToLower(string(k)))
			}
			rows := [][]any{{"name", p.Name}, {"type", string(p.Kind)}, {"metastore_admin", fmt.Sprint(m.IsAdmin(p.ID))},
				{"groups", joinNames(m.GroupsOf(p.ID))}}
			if k == catalog.KindGroup {
				rows = append(rows, []any{"members", joinNames(m.Members(p.ID))})
			} else {
				rows = append(rows, []any{"password", map[bool]string{true: "set", false: "not set"}[p.Password != ""]})
			}
			rows = append(rows, []any{"comment", nullIfEmpty(p.Comment)}, []any{"created", p.Created.UTC().Format("2006-01-02 15:04:05Z07:00")})
			return rows, nil
		}), nil
	}
	t := secType(x.Type)
	path, err := s.path(t, x.Name)
	if err != nil {
		return nil, err
	}
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		sec, err := m.Lookup(t, path)
		if err != nil {
			return nil, err
		}
		if !m.CanSee(me.ID, sec.ID) {
			return nil, catalog.Errorf(catalog.CodePermissionDenied, "permission denied to describe %s %s", strings.ToLower(string(t)), sec.FullName())
		}
		rows := [][]any{{"name", sec.Name}, {"full_name", sec.FullName()}, {"type", string(sec.Type)},
			{"owner", ownerName(m, sec.Owner)}, {"comment", nullIfEmpty(sec.Comment)},
			{"created", sec.Created.UTC().Format("2006-01-02 15:04:05Z07:00")}}
		if sec.Type == catalog.TypeConnection {
			rows = append(rows, []any{"connection_type", sec.Options["type"]})
			for _, k := range sortedKeys(sec.Options) {
				if k != "type" {
					rows = append(rows, []any{"option." + k, catalog.RedactURL(sec.Options[k])}) // URLs stored before credentials in them were refused
				}
			}
			secrets, err := s.f.cat.Keyring().OpenMap(sec.Secrets, catalog.SecretsAAD(sec.ID))
			if err != nil {
				return nil, err
			}
			for _, k := range sortedKeys(secrets) {
				rows = append(rows, []any{"option." + k, masked})
			}
		}
		if sec.Type == catalog.TypeModelService || sec.Type == catalog.TypeProviderService {
			return s.describeService(m, sec, rows)
		}
		return rows, nil
	}), nil
}

// explainAccess answers EXPLAIN ACCESS FOR subject [VIA actor] priv ON
// securable with the on-behalf-of rule: allowed only if the subject and the
// actor both hold the privilege. One row per requirement of each, then the
// decision. Admins, the subject and actor themselves, and those who may
// manage the securable may ask.
func (s *Session) explainAccess(x *parser.ExplainAccess) (*stmt, error) {
	t := secType(x.On.Type)
	path, err := s.path(t, x.On.Name)
	if err != nil {
		return nil, err
	}
	cols := textCols("role", "principal", "requirement", "result", "reason")
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		sec, err := m.Lookup(t, path)
		if err != nil {
			return nil, err
		}
		if ti, ok := catalog.LookupType(sec.Type); ok && !ti.Applies(x.Privilege) {
			return nil, catalog.Errorf(catalog.CodeInvalidPrivilege, "privilege %s does not apply to %s", x.Privilege.SQL(), strings.ToLower(string(sec.Type)))
		}
		subject, ok := m.PrincipalByName(x.Subject.Name)
		if !ok {
			return nil, catalog.Errorf(catalog.CodeNotFound, "principal %s does not exist", catalog.QuoteIdent(x.Subject.Name))
		}
		var actor *catalog.Principal
		if x.Actor != nil {
			if actor, ok = m.PrincipalByName(x.Actor.Name); !ok {
				return nil, catalog.Errorf(catalog.CodeNotFound, "principal %s does not exist", catalog.QuoteIdent(x.Actor.Name))
			}
		}
		if manage, _ := m.CanManage(me.ID, sec.ID); !manage && me.ID != subject.ID && (actor == nil || me.ID != actor.ID) {
			return nil, catalog.Errorf(catalog.CodePermissionDenied,
				"permission denied to explain access of %s: only metastore admins, those who may manage %s %s, and the principals themselves may",
				catalog.QuoteIdent(subject.Name), strings.ToLower(string(sec.Type)), sec.FullName())
		}
		what := x.Privilege.SQL() + " on " + string(sec.Type) + " " + sec.FullName()
		actorName := ""
		if actor != nil {
			actorName = actor.Name
		}
		// The catalog's evaluator and on-behalf-of rule: the steps and
		// reasons the decision engine gives.
		d := m.Access(subject.Name, actorName, x.Privilege, sec.ID, true)
		var rows [][]any
		for _, st := range d.Steps {
			rows = append(rows, []any{st.Role, st.Principal, st.Check, st.Result, st.Reason})
		}
		result := "deny"
		if d.Allowed {
			result = "allow"
		}
		rows = append(rows, []any{"decision", nil, what, result, d.Brief})
		return rows, nil
	}), nil
}

// showConnectionStatus answers SHOW CONNECTION STATUS [FOR user]: the
// accounts connected for per_user_oauth connections. Users see their own;
// metastore admins anyone's (without FOR: everyone's).
func (s *Session) showConnectionStatus(x *parser.ShowConnectionStatus) (*stmt, error) {
	if s.f.status == nil {
		return nil, catalog.Errorf(catalog.CodeNotSupported, "SHOW CONNECTION STATUS needs the MCP gateway in this process (mandate serve with --oidc-issuer or --dev)")
	}
	target, admin := "", false
	var err error
	s.f.cat.Read(func(m *catalog.Model) {
		me, ok := m.PrincipalByName(s.user)
		if !ok {
			err = catalog.Errorf(catalog.CodePermissionDenied, "principal %s no longer exists", catalog.QuoteIdent(s.user))
			return
		}
		admin = m.IsAdmin(me.ID)
	})
	if err != nil {
		return nil, err
	}
	switch {
	case x.For != nil:
		target = x.For.Name
	case !admin:
		target = s.user
	}
	if target != s.user && !admin {
		return nil, catalog.Errorf(catalog.CodePermissionDenied, "only metastore admins may see the connections of other users")
	}
	cols := []pgwire.Column{{Name: "user_name", TypeOID: 25}, {Name: "connection", TypeOID: 25},
		{Name: "connected_at", TypeOID: oidTimestamptz}, {Name: "expires_at", TypeOID: oidTimestamptz},
		{Name: "scopes", TypeOID: 25}, {Name: "refreshable", TypeOID: oidBool}}
	return &stmt{s: s, cols: cols, run: func(ctx context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
		list, err := s.f.status(ctx, target)
		if err != nil {
			return "", catalog.Errorf(catalog.CodeUnavailable, "connection status: %v", err)
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].User != list[j].User {
				return list[i].User < list[j].User
			}
			return list[i].Connection < list[j].Connection
		})
		for _, c := range list {
			var exp any
			if !c.ExpiresAt.IsZero() {
				exp = c.ExpiresAt
			}
			if err := w.WriteRow([]any{c.User, c.Connection, c.ConnectedAt, exp, strings.Join(c.Scopes, " "), c.Refreshable}); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("SELECT %d", len(list)), nil
	}}, nil
}
