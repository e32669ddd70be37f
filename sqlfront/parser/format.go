package parser

import (
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// QuoteIdent returns name as it must be written in a statement: bare when
// it is a plain identifier that reads back unchanged (lower-case ASCII
// letters, digits, '_', '$' not first, non-ASCII characters) and is not a
// reserved keyword of this grammar, and double-quoted with "" escaping
// otherwise.
func QuoteIdent(name string) string {
	if isPlainWord(name, false) && !Lookup(name).IsReserved() {
		return name
	}
	return quoteDouble(name)
}

// isPlainWord reports whether s scans as a single unquoted word that folds
// to itself: ASCII upper-case letters are allowed only when upper is set
// (the scanner folds them, which callers like the connection type undo).
func isPlainWord(s string, upper bool) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if !upper {
				return false
			}
			continue
		}
		if i == 0 && !isIdentStart(r) || i > 0 && !isIdentPart(r) {
			return false
		}
		if upper && r >= 'a' && r <= 'z' {
			return false
		}
	}
	return true
}

func quoteDouble(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuoteString returns s as a SQL string literal ('...', doubling single quotes).
func QuoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// String returns the identifier as SQL. An identifier that was written
// quoted is always printed quoted, so that it reads back with Quoted set.
func (id Ident) String() string {
	if id.Quoted {
		return quoteDouble(id.Name)
	}
	return QuoteIdent(id.Name)
}

// String joins the parts with ".".
func (q QName) String() string {
	parts := make([]string, len(q))
	for i, id := range q {
		parts[i] = id.String()
	}
	return strings.Join(parts, ".")
}

// String returns key 'value'.
func (o Option) String() string { return QuoteIdent(o.Key) + " " + QuoteString(o.Value) }

// String returns METASTORE or the type followed by the name.
func (r SecurableRef) String() string {
	if r.Type == ObjMetastore {
		return string(r.Type)
	}
	return string(r.Type) + " " + r.Name.String()
}

func optionList(opts []Option) string {
	parts := make([]string, len(opts))
	for i, o := range opts {
		parts[i] = o.String()
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func identList(ids []Ident) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.String()
	}
	return strings.Join(parts, ", ")
}

func privilegeList(privs []catalog.Privilege) string {
	parts := make([]string, len(privs))
	for i, p := range privs {
		parts[i] = p.SQL()
	}
	return strings.Join(parts, ", ")
}

func ifNotExists(b bool) string {
	if b {
		return "IF NOT EXISTS "
	}
	return ""
}

func comment(c *string) string {
	if c == nil {
		return ""
	}
	return " COMMENT " + QuoteString(*c)
}

func stringOrNull(s *string) string {
	if s == nil {
		return "NULL"
	}
	return QuoteString(*s)
}

func (s *CreateCatalog) String() string {
	return "CREATE CATALOG " + ifNotExists(s.IfNotExists) + s.Name.String() + comment(s.Comment)
}

func (s *CreateSchema) String() string {
	return "CREATE SCHEMA " + ifNotExists(s.IfNotExists) + s.Name.String() + comment(s.Comment)
}

func (s *CreateConnection) String() string {
	typ := s.Type
	if !isPlainWord(typ, true) {
		typ = quoteDouble(typ)
	}
	out := "CREATE CONNECTION " + ifNotExists(s.IfNotExists) + s.Name.String() + " TYPE " + typ
	if len(s.Options) > 0 {
		out += " OPTIONS " + optionList(s.Options)
	}
	return out + comment(s.Comment)
}

func (s *Drop) String() string {
	out := "DROP " + string(s.Type) + " "
	if s.IfExists {
		out += "IF EXISTS "
	}
	out += s.Name.String()
	if s.Cascade {
		out += " CASCADE"
	}
	return out
}

func (s *AlterOwner) String() string {
	return "ALTER " + string(s.Type) + " " + s.Name.String() + " OWNER TO " + s.Owner.String()
}

func (s *AlterRename) String() string {
	return "ALTER " + string(s.Type) + " " + s.Name.String() + " RENAME TO " + s.NewName.String()
}

func (s *AlterConnectionOptions) String() string {
	return "ALTER CONNECTION " + s.Name.String() + " OPTIONS " + optionList(s.Options)
}

func (s *CommentOn) String() string {
	return "COMMENT ON " + string(s.Type) + " " + s.Name.String() + " IS " + stringOrNull(s.Comment)
}

func (s *CreatePrincipal) String() string {
	out := "CREATE " + string(s.Type) + " " + ifNotExists(s.IfNotExists) + s.Name.String()
	if s.Password != nil {
		out += " WITH PASSWORD " + QuoteString(*s.Password)
	}
	return out
}

func (s *AlterPassword) String() string {
	return "ALTER " + string(s.Type) + " " + s.Name.String() + " WITH PASSWORD " + stringOrNull(s.Password)
}

func (s *AlterGroupMembers) String() string {
	verb := " REMOVE "
	if s.Add {
		verb = " ADD "
	}
	return "ALTER GROUP " + s.Group.String() + verb + string(s.MemberType) + " " + identList(s.Members)
}

func (s *Grant) String() string {
	return "GRANT " + privilegeList(s.Privileges) + " ON " + s.On.String() + " TO " + identList(s.To)
}

func (s *Revoke) String() string {
	return "REVOKE " + privilegeList(s.Privileges) + " ON " + s.On.String() + " FROM " + identList(s.From)
}

func (s *ShowGrants) String() string {
	switch {
	case s.To != nil:
		return "SHOW GRANTS TO " + s.To.String()
	case s.On == nil:
		return "SHOW GRANTS"
	case s.Principal != nil:
		return "SHOW GRANTS " + s.Principal.String() + " ON " + s.On.String()
	}
	return "SHOW GRANTS ON " + s.On.String()
}

func (s *ShowObjects) String() string {
	if len(s.In) > 0 {
		return "SHOW " + s.What + " IN " + s.In.String()
	}
	return "SHOW " + s.What
}

func (s *Describe) String() string {
	return "DESCRIBE " + string(s.Type) + " " + s.Name.String()
}

func (s *ExplainAccess) String() string {
	out := "EXPLAIN ACCESS FOR " + s.Subject.String()
	if s.Actor != nil {
		out += " VIA " + s.Actor.String()
	}
	return out + " " + s.Privilege.SQL() + " ON " + s.On.String()
}

func (*ShowRevision) String() string { return "SHOW REVISION" }

func (s *ShowConnectionStatus) String() string {
	if s.For == nil {
		return "SHOW CONNECTION STATUS"
	}
	return "SHOW CONNECTION STATUS FOR " + s.For.String()
}

func (s *CreatePolicy) String() string {
	out := "CREATE POLICY " + s.Name.String() + " ON " + s.On.String()
	switch {
	case s.Call && s.Result:
		out += " FOR CALL AND RESULT"
	case s.Call:
		out += " FOR CALL"
	case s.Result:
		out += " FOR RESULT"
	}
	if len(s.Using) > 0 {
		out += " USING " + s.Using.String()
		if len(s.Options) > 0 {
			out += " OPTIONS " + optionList(s.Options)
		}
		return out
	}
	return out + " AS " + QuoteString(s.Source)
}

func (s *ShowPolicies) String() string {
	if s.On == nil {
		return "SHOW POLICIES"
	}
	return "SHOW POLICIES ON " + s.On.String()
}

func (s *CreateService) String() string {
	out := "CREATE " + string(s.Type) + " " + ifNotExists(s.IfNotExists) + s.Name.String()
	if len(s.Options) > 0 {
		out += " OPTIONS " + optionList(s.Options)
	}
	return out + comment(s.Comment)
}

func (s *AlterServiceOptions) String() string {
	return "ALTER " + string(s.Type) + " " + s.Name.String() + " SET OPTIONS " + optionList(s.Options)
}

// String returns the FOR clause (with a leading space), "" for the
// service level.
func (t LimitTarget) String() string {
	switch {
	case t.Level == catalog.LevelEachUser:
		return " FOR EACH USER"
	case t.Principal != nil:
		return " FOR " + string(t.Level) + " " + t.Principal.String()
	}
	return ""
}

func (s *SetRateLimit) String() string {
	var parts []string
	if s.Requests > 0 {
		parts = append(parts, strconv.FormatInt(s.Requests, 10)+" REQUESTS")
	}
	if s.Tokens > 0 {
		parts = append(parts, strconv.FormatInt(s.Tokens, 10)+" TOKENS")
	}
	return "ALTER " + s.On.String() + " SET RATE LIMIT " + strings.Join(parts, ", ") + " PER MINUTE" + s.For.String()
}

func (s *DropRateLimit) String() string {
	out := "ALTER " + s.On.String() + " DROP RATE LIMIT"
	if s.IfExists {
		out += " IF EXISTS"
	}
	return out + s.For.String()
}

func (s *ShowRateLimits) String() string {
	if s.On == nil {
		return "SHOW RATE LIMITS"
	}
	return "SHOW RATE LIMITS ON " + s.On.String()
}

func (s *CreateAccessToken) String() string {
	out := "CREATE ACCESS TOKEN"
	if s.Name != nil {
		out += " " + s.Name.String()
	}
	if s.User != nil {
		out += " FOR USER " + s.User.String()
	}
	if s.Via != nil {
		out += " VIA " + s.Via.String()
	}
	if s.ExpiresIn != nil {
		out += " EXPIRES IN " + QuoteString(*s.ExpiresIn)
	}
	return out + comment(s.Comment)
}

func (s *ShowAccessTokens) String() string {
	if s.For == nil {
		return "SHOW ACCESS TOKENS"
	}
	return "SHOW ACCESS TOKENS FOR USER " + s.For.String()
}

func (s *CreateBudget) String() string {
	out := "CREATE BUDGET " + ifNotExists(s.IfNotExists) + s.Name.String() + " LIMIT " + s.Limit + " USD PER MONTH" + s.For.String()
	if s.On != nil {
		out += " ON " + s.On.String()
	}
	for i, t := range s.Tags {
		if i == 0 {
			out += " WHERE TAG "
		} else {
			out += " AND TAG "
		}
		out += t.Key.String() + " = " + QuoteString(t.Value)
	}
	return out + comment(s.Comment)
}

func (*ShowBudgets) String() string { return "SHOW BUDGETS" }

// Interface guards.
var (
	_ Statement = (*CreateService)(nil)
	_ Statement = (*AlterServiceOptions)(nil)
	_ Statement = (*SetRateLimit)(nil)
	_ Statement = (*DropRateLimit)(nil)
	_ Statement = (*ShowRateLimits)(nil)
	_ Statement = (*CreateAccessToken)(nil)
	_ Statement = (*ShowAccessTokens)(nil)
	_ Statement = (*CreateBudget)(nil)
	_ Statement = (*ShowBudgets)(nil)
	_ Statement = (*ExplainAccess)(nil)
	_ Statement = (*ShowRevision)(nil)
	_ Statement = (*CreatePolicy)(nil)
	_ Statement = (*ShowPolicies)(nil)
	_ Statement = (*CreateCatalog)(nil)
	_ Statement = (*CreateSchema)(nil)
	_ Statement = (*CreateConnection)(nil)
	_ Statement = (*Drop)(nil)
	_ Statement = (*AlterOwner)(nil)
	_ Statement = (*AlterRename)(nil)
	_ Statement = (*AlterConnectionOptions)(nil)
	_ Statement = (*CommentOn)(nil)
	_ Statement = (*CreatePrincipal)(nil)
	_ Statement = (*AlterPassword)(nil)
	_ Statement = (*AlterGroupMembers)(nil)
	_ Statement = (*Grant)(nil)
	_ Statement = (*Revoke)(nil)
	_ Statement = (*ShowGrants)(nil)
	_ Statement = (*ShowObjects)(nil)
	_ Statement = (*Describe)(nil)
	_ Node      = Ident{}
	_ Node      = QName(nil)
	_ Node      = Option{}
	_ Node      = SecurableRef{}
)

// Names returns the parts of the name as strings.
func (q QName) Names() []string {
	out := make([]string, len(q))
	for i, id := range q {
		out[i] = id.Name
	}
	return out
}
