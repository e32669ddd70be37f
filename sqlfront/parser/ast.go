package parser

import "github.com/mandatehq/mandate/catalog"

// Node is any AST node. String returns SQL that parses back to an equal node.
type Node interface {
	String() string
}

// Statement is a governance statement.
type Statement interface {
	Node
	stmt()
	// Kind is the statement kind used for audit action names and command
	// tags, e.g. "GRANT", "CREATE CONNECTION", "ALTER GROUP", "SHOW GRANTS".
	Kind() string
}

// Ident is one identifier. Unquoted identifiers are folded to lower case by
// the scanner; Quoted records whether it was written in "double quotes" or
// `backticks` (String re-quotes with double quotes when needed).
type Ident struct {
	Name   string
	Quoted bool
}

// QName is a dotted name of 1..3 parts (catalog.schema.object).
type QName []Ident

// ObjectType is the kind of object a statement addresses.
type ObjectType string

const (
	ObjCatalog          ObjectType = "CATALOG"
	ObjSchema           ObjectType = "SCHEMA"
	ObjConnection       ObjectType = "CONNECTION"
	ObjUser             ObjectType = "USER"
	ObjGroup            ObjectType = "GROUP"
	ObjServicePrincipal ObjectType = "SERVICE PRINCIPAL"
	ObjMetastore        ObjectType = "METASTORE"
	ObjPolicy           ObjectType = "POLICY"
	ObjTable            ObjectType = "TABLE" // GRANT/REVOKE/SHOW GRANTS only
	ObjModelService     ObjectType = "MODEL SERVICE"
	ObjProviderService  ObjectType = "MODEL PROVIDER SERVICE"
	ObjAccessToken      ObjectType = "ACCESS TOKEN" // DROP only
	ObjBudget           ObjectType = "BUDGET"       // DROP only
)

// Option is one key/value in OPTIONS (key 'value', ...). Keys are
// identifiers (folded to lower case), values string literals.
type Option struct {
	Key   string
	Value string
}

// SecurableRef names a securable in GRANT/REVOKE/SHOW GRANTS: METASTORE
// (Name empty), CATALOG c, SCHEMA [c.]s, CONNECTION [[c.]s.]x, TABLE [c.]s.t.
type SecurableRef struct {
	Type ObjectType
	Name QName
}

// CreateCatalog: CREATE CATALOG [IF NOT EXISTS] name [COMMENT 'c']
type CreateCatalog struct {
	Name        Ident
	IfNotExists bool
	Comment     *string
}

// CreateSchema: CREATE SCHEMA [IF NOT EXISTS] [c.]s [COMMENT 'c']
type CreateSchema struct {
	Name        QName
	IfNotExists bool
	Comment     *string
}

// CreateConnection: CREATE CONNECTION [IF NOT EXISTS] name TYPE type
// [OPTIONS (k 'v', ...)] [COMMENT 'c']. Type is folded to upper case (MCP).
type CreateConnection struct {
	Name        QName
	IfNotExists bool
	Type        string
	Options     []Option
	Comment     *string
}

// Drop: DROP {CATALOG|SCHEMA|CONNECTION|USER|GROUP|SERVICE PRINCIPAL}
// [IF EXISTS] name [CASCADE|RESTRICT]
type Drop struct {
	Type     ObjectType
	Name     QName
	IfExists bool
	Cascade  bool
}

// AlterOwner: ALTER {CATALOG|SCHEMA|CONNECTION} name [SET] OWNER TO principal
type AlterOwner struct {
	Type  ObjectType
	Name  QName
	Owner Ident
}

// AlterRename: ALTER {CATALOG|SCHEMA|CONNECTION} name RENAME TO newname
type AlterRename struct {
	Type    ObjectType
	Name    QName
	NewName Ident
}

// AlterConnectionOptions: ALTER CONNECTION name [SET] OPTIONS (k 'v', ...)
// (replaces the whole option list, as in Databricks).
type AlterConnectionOptions struct {
	Name    QName
	Options []Option
}

// CommentOn: COMMENT ON {CATALOG|SCHEMA|CONNECTION} name IS 'text' | NULL
type CommentOn struct {
	Type    ObjectType
	Name    QName
	Comment *string // nil = NULL (clears)
}

// CreatePrincipal: CREATE {USER|GROUP|SERVICE PRINCIPAL} [IF NOT EXISTS] name
// [WITH PASSWORD 'pw']  (password only for USER and SERVICE PRINCIPAL)
type CreatePrincipal struct {
	Type        ObjectType
	Name        Ident
	IfNotExists bool
	Password    *string
}

// AlterPassword: ALTER {USER|SERVICE PRINCIPAL} name WITH PASSWORD 'pw' | NULL
type AlterPassword struct {
	Type     ObjectType
	Name     Ident
	Password *string // nil = PASSWORD NULL (removes the password)
}

// AlterGroupMembers: ALTER GROUP g {ADD|REMOVE} {USER|GROUP|SERVICE PRINCIPAL} p [, ...]
type AlterGroupMembers struct {
	Group      Ident
	Add        bool
	MemberType ObjectType
	Members    []Ident
}

// Grant: GRANT priv [, ...] ON securable TO principal [, ...]
type Grant struct {
	Privileges []catalog.Privilege
	On         SecurableRef
	To         []Ident
}

// Revoke: REVOKE priv [, ...] ON securable FROM principal [, ...]
type Revoke struct {
	Privileges []catalog.Privilege
	On         SecurableRef
	From       []Ident
}

// ShowGrants: SHOW GRANTS [principal] ON securable | SHOW GRANTS TO principal
// Exactly one of On and To is set; Principal only with On.
type ShowGrants struct {
	Principal *Ident
	On        *SecurableRef
	To        *Ident
}

// ShowObjects: SHOW CATALOGS | SCHEMAS [IN catalog] | CONNECTIONS [IN c.s]
// | USERS | GROUPS | SERVICE PRINCIPALS. What is the plural keyword(s)
// upper-case: "CATALOGS", "SCHEMAS", "CONNECTIONS", "USERS", "GROUPS",
// "SERVICE PRINCIPALS". In is nil when absent. (FROM is accepted for IN.)
type ShowObjects struct {
	What string
	In   QName
}

// Describe: DESCRIBE|DESC {CATALOG|SCHEMA|CONNECTION|USER|GROUP|SERVICE PRINCIPAL} name
type Describe struct {
	Type ObjectType
	Name QName
}

// ExplainAccess: EXPLAIN ACCESS FOR subject [VIA actor] privilege ON securable
type ExplainAccess struct {
	Subject   Ident
	Actor     *Ident
	Privilege catalog.Privilege
	On        SecurableRef
}

// ShowRevision: SHOW REVISION
type ShowRevision struct{}

// ShowConnectionStatus: SHOW CONNECTION STATUS [FOR user] — which users
// have connected their own accounts (per_user_oauth connections).
type ShowConnectionStatus struct {
	For *Ident
}

func (*ShowConnectionStatus) stmt()        {}
func (*ShowConnectionStatus) Kind() string { return "SHOW CONNECTION STATUS" }

// CreatePolicy: CREATE POLICY name ON {CATALOG|SCHEMA|CONNECTION} x
// [FOR CALL | FOR RESULT | FOR CALL AND RESULT] AS 'rego' (or AS $$ ... $$)
// | USING builtin [OPTIONS (k 'v', ...)]. DROP POLICY [IF EXISTS] name is
// a Drop of ObjPolicy.
type CreatePolicy struct {
	Name Ident
	On   SecurableRef
	// Call and Result are the phases of the FOR clause (both false: no
	// FOR clause, the kind's default).
	Call, Result bool
	// Source is a Rego policy's module (AS); Using names a built-in
	// guardrail (system.ai.detect_sensitive_data) with its Options.
	Source  string
	Using   QName
	Options []Option
}

// ShowPolicies: SHOW POLICIES [ON securable]
type ShowPolicies struct {
	On *SecurableRef
}

func (*CreatePolicy) stmt()        {}
func (*ShowPolicies) stmt()        {}
func (*CreatePolicy) Kind() string { return "CREATE POLICY" }
func (*ShowPolicies) Kind() string { return "SHOW POLICIES" }

func (*ExplainAccess) stmt()          {}
func (*ShowRevision) stmt()           {}
func (*ExplainAccess) Kind() string   { return "EXPLAIN ACCESS" }
func (*ShowRevision) Kind() string    { return "SHOW REVISION" }
func (*CreateCatalog) stmt()          {}
func (*CreateSchema) stmt()           {}
func (*CreateConnection) stmt()       {}
func (*Drop) stmt()                   {}
func (*AlterOwner) stmt()             {}
func (*AlterRename) stmt()            {}
func (*AlterConnectionOptions) stmt() {}
func (*CommentOn) stmt()              {}
func (*CreatePrincipal) stmt()        {}
func (*AlterPassword) stmt()          {}
func (*AlterGroupMembers) stmt()      {}
func (*Grant) stmt()                  {}
func (*Revoke) stmt()                 {}
func (*ShowGrants) stmt()             {}
func (*ShowObjects) stmt()            {}
func (*Describe) stmt()               {}

func (*CreateCatalog) Kind() string          { return "CREATE CATALOG" }
func (*CreateSchema) Kind() string           { return "CREATE SCHEMA" }
func (*CreateConnection) Kind() string       { return "CREATE CONNECTION" }
func (s *Drop) Kind() string                 { return "DROP " + string(s.Type) }
func (s *AlterOwner) Kind() string           { return "ALTER " + string(s.Type) }
func (s *AlterRename) Kind() string          { return "ALTER " + string(s.Type) }
func (*AlterConnectionOptions) Kind() string { return "ALTER CONNECTION" }
func (*CommentOn) Kind() string              { return "COMMENT" }
func (s *CreatePrincipal) Kind() string      { return "CREATE " + string(s.Type) }
func (s *AlterPassword) Kind() string        { return "ALTER " + string(s.Type) }
func (*AlterGroupMembers) Kind() string      { return "ALTER GROUP" }
func (*Grant) Kind() string                  { return "GRANT" }
func (*Revoke) Kind() string                 { return "REVOKE" }
func (*ShowGrants) Kind() string             { return "SHOW GRANTS" }
func (s *ShowObjects) Kind() string          { return "SHOW " + s.What }
func (s *Describe) Kind() string             { return "DESCRIBE " + string(s.Type) }

// CreateService: CREATE MODEL [PROVIDER] SERVICE [IF NOT EXISTS] name
// [OPTIONS (k 'v', ...)] [COMMENT 'c']. Type is ObjModelService or
// ObjProviderService.
type CreateService struct {
	Type        ObjectType
	Name        QName
	IfNotExists bool
	Options     []Option
	Comment     *string
}

// AlterServiceOptions: ALTER MODEL [PROVIDER] SERVICE name [SET] OPTIONS
// (k 'v', ...) (replaces the whole option list, as for connections).
type AlterServiceOptions struct {
	Type    ObjectType
	Name    QName
	Options []Option
}

// LimitTarget is the FOR clause of a rate limit or budget: Level is
// catalog.LevelService (no FOR clause), LevelEachUser (FOR EACH USER) or
// a level naming a principal (FOR USER | SERVICE PRINCIPAL | GROUP name).
type LimitTarget struct {
	Level     catalog.LimitLevel
	Principal *Ident
}

// SetRateLimit: ALTER {MODEL SERVICE|CONNECTION} name SET RATE LIMIT
// n REQUESTS [, m TOKENS] PER MINUTE [FOR target]. A dimension not given
// is 0 (not limited).
type SetRateLimit struct {
	On               SecurableRef
	Requests, Tokens int64
	For              LimitTarget
}

// DropRateLimit: ALTER {MODEL SERVICE|CONNECTION} name DROP RATE LIMIT
// [IF EXISTS] [FOR target].
type DropRateLimit struct {
	On       SecurableRef
	IfExists bool
	For      LimitTarget
}

// ShowRateLimits: SHOW RATE LIMITS [ON {MODEL SERVICE|CONNECTION} name].
type ShowRateLimits struct {
	On *SecurableRef
}

// CreateAccessToken: CREATE ACCESS TOKEN [name] [FOR USER user]
// [VIA agent] [EXPIRES IN 'lifetime'] [COMMENT 'c']. Without FOR USER the
// token is the caller's.
type CreateAccessToken struct {
	Name      *Ident
	User      *Ident
	Via       *Ident
	ExpiresIn *string
	Comment   *string
}

// ShowAccessTokens: SHOW ACCESS TOKENS [FOR USER user].
type ShowAccessTokens struct {
	For *Ident
}

// TagCond is one WHERE TAG key = 'value' condition of a budget.
type TagCond struct {
	Key   Ident
	Value string
}

// CreateBudget: CREATE BUDGET [IF NOT EXISTS] name LIMIT amount USD PER
// MONTH FOR target [ON MODEL SERVICE x] [WHERE TAG k = 'v' { AND TAG k =
// 'v' }] [COMMENT 'c']. Limit is the amount as written.
type CreateBudget struct {
	Name        Ident
	IfNotExists bool
	Limit       string
	For         LimitTarget
	On          *SecurableRef
	Tags        []TagCond
	Comment     *string
}

// ShowBudgets: SHOW BUDGETS.
type ShowBudgets struct{}

func (*CreateService) stmt()       {}
func (*AlterServiceOptions) stmt() {}
func (*SetRateLimit) stmt()        {}
func (*DropRateLimit) stmt()       {}
func (*ShowRateLimits) stmt()      {}
func (*CreateAccessToken) stmt()   {}
func (*ShowAccessTokens) stmt()    {}
func (*CreateBudget) stmt()        {}
func (*ShowBudgets) stmt()         {}

func (s *CreateService) Kind() string       { return "CREATE " + string(s.Type) }
func (s *AlterServiceOptions) Kind() string { return "ALTER " + string(s.Type) }
func (s *SetRateLimit) Kind() string        { return "ALTER " + string(s.On.Type) }
func (s *DropRateLimit) Kind() string       { return "ALTER " + string(s.On.Type) }
func (*ShowRateLimits) Kind() string        { return "SHOW RATE LIMITS" }
func (*CreateAccessToken) Kind() string     { return "CREATE ACCESS TOKEN" }
func (*ShowAccessTokens) Kind() string      { return "SHOW ACCESS TOKENS" }
func (*CreateBudget) Kind() string          { return "CREATE BUDGET" }
func (*ShowBudgets) Kind() string           { return "SHOW BUDGETS" }
