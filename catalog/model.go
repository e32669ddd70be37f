package catalog

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// ID identifies a principal or a securable. IDs are assigned by the catalog
// service and never reused; names may change (RENAME), IDs do not.
type ID int64

// Revision is the catalog revision. Every committed change increases it by one.
type Revision int64

// PrincipalKind is the kind of a principal.
type PrincipalKind string

const (
	KindUser             PrincipalKind = "USER"
	KindGroup            PrincipalKind = "GROUP"
	KindServicePrincipal PrincipalKind = "SERVICE PRINCIPAL"
)

// Built-in names.
const (
	AccountUsers  = "account users" // group containing every user and service principal
	AdminUser     = "admin"         // built-in metastore admin
	SystemCatalog = "system"
	MetastoreName = "metastore"
)

// Principal is a user, group or service principal. Names are unique across
// all kinds.
type Principal struct {
	ID       ID
	Name     string
	Kind     PrincipalKind
	Admin    bool   // metastore admin (members of an admin group are admins too)
	Builtin  bool   // built-in principals cannot be dropped
	Password string // SCRAM-SHA-256 verifier in PostgreSQL's format; never a clear password
	Comment  string
	Created  time.Time
}

// Membership says Member is a direct member of Group.
type Membership struct {
	Group  ID
	Member ID
}

// Securable is any object privileges are granted on: the metastore,
// catalogs, schemas, connections (and later model endpoints, tables, ...).
type Securable struct {
	ID      ID
	Type    SecurableType
	Parent  ID // 0 for the metastore; the metastore's ID for catalogs; ...
	Name    string
	Owner   ID
	Comment string
	// Options are the non-secret options (connections).
	Options map[string]string
	// Secrets is the AES-GCM sealed JSON of the secret options, or nil.
	Secrets []byte
	Builtin bool
	Created time.Time

	full string // dotted full name, maintained by the Model
}

// FullName returns the dotted name (catalog.schema.object, identifiers quoted
// where needed) as maintained by the Model; "metastore" for the metastore.
func (s *Securable) FullName() string {
	if s.Type == TypeMetastore {
		return MetastoreName
	}
	if s.full == "" {
		return QuoteIdent(s.Name)
	}
	return s.full
}

// Grant is one privilege granted on a securable to a principal.
type Grant struct {
	Securable ID
	Principal ID
	Privilege Privilege
	Grantor   ID
}

// GrantKey identifies a grant.
type GrantKey struct {
	Securable ID
	Principal ID
	Privilege Privilege
}

func (g Grant) Key() GrantKey { return GrantKey{g.Securable, g.Principal, g.Privilege} }

// SecurableType names a kind of securable. The set of types is a registry
// (see securableTypes) so that new types need no change to the core.
type SecurableType string

const (
	TypeMetastore  SecurableType = "METASTORE"
	TypeCatalog    SecurableType = "CATALOG"
	TypeSchema     SecurableType = "SCHEMA"
	TypeConnection SecurableType = "CONNECTION"
	// TypePolicy is a Rego policy attached to a catalog, schema or
	// connection (its Parent); its source is Options["source"].
	TypePolicy SecurableType = "POLICY"
	// TypeTable is a table or view in a schema. Today only the built-in
	// system tables exist (system.access.audit and the views of
	// system.information_schema, see SystemTables); they are read with
	// SELECT over the PostgreSQL wire protocol.
	TypeTable SecurableType = "TABLE"
	// TypeProviderService is a model provider service: an external LLM
	// provider and the credential the gateway presents to it (options in
	// services.go; api_key sealed like a connection's secrets).
	TypeProviderService SecurableType = "MODEL PROVIDER SERVICE"
	// TypeModelService is a model service: what agents call on the LLM
	// endpoint, routing to models at provider services.
	TypeModelService SecurableType = "MODEL SERVICE"
	// TypeAccessToken is a personal access token (tokens.go): stored
	// under the metastore, owned by its user, nothing granted on it.
	TypeAccessToken SecurableType = "ACCESS TOKEN"
	// TypeRateLimit is one rate-limit definition attached to a model
	// service or connection (its Parent; limits.go).
	TypeRateLimit SecurableType = "RATE LIMIT"
	// TypeBudget is a budget (limits.go): under the metastore, or under
	// the model service it is restricted to.
	TypeBudget SecurableType = "BUDGET"
	// TypeToolPin is a tool definition seen on a connection, with its
	// approved pin (pin_tools; its Parent is the connection). Not named in
	// SQL: ALTER CONNECTION … APPROVE TOOLS and SHOW TOOLS address it.
	TypeToolPin SecurableType = "TOOL PIN"
)

// Privilege is a privilege in its canonical, underscore spelling.
type Privilege string

const (
	PrivUseCatalog       Privilege = "USE_CATALOG"
	PrivUseSchema        Privilege = "USE_SCHEMA"
	PrivCreateCatalog    Privilege = "CREATE_CATALOG"
	PrivCreateSchema     Privilege = "CREATE_SCHEMA"
	PrivCreateConnection Privilege = "CREATE_CONNECTION"
	PrivUseConnection    Privilege = "USE_CONNECTION"
	PrivBrowse           Privilege = "BROWSE"
	PrivManage           Privilege = "MANAGE"
	PrivAll              Privilege = "ALL_PRIVILEGES"
	// PrivSelect reads a table (Unity Catalog: SELECT on the table, or on a
	// containing schema or catalog, plus USE_CATALOG and USE_SCHEMA).
	PrivSelect Privilege = "SELECT"
	// PrivExecute calls a model service (and, for a model service's
	// owner, the provider services it routes to).
	PrivExecute Privilege = "EXECUTE"
	// PrivCreateService creates model services and model provider
	// services in a schema.
	PrivCreateService Privilege = "CREATE_SERVICE"
)

// PrivilegeInfo is the registry entry of a privilege: everything the
// privilege evaluator needs to know about it.
type PrivilegeInfo struct {
	Privilege Privilege
	// SQL is the spelling SHOW GRANTS and explanations print.
	SQL string
	// All: a grant of it gives every privilege except those NotInAll
	// (ALL PRIVILEGES, expanded at check time).
	All bool
	// NotInAll: not given by ALL PRIVILEGES (MANAGE).
	NotInAll bool
	// NoOwnUse: holding it on a securable needs the USE privileges of the
	// containers but not the securable's own USE privilege (BROWSE).
	NoOwnUse bool
}

// privileges is the privilege registry. A privilege's position is its
// index (PrivilegeIndex) and its bit in a PrivSet; new privileges are
// appended (SELECT came later and is last). Adding a privilege is one entry
// here and its name in the TypeInfo.Privileges of the types it applies to.
var privileges = [...]PrivilegeInfo{
	{Privilege: PrivAll, SQL: "ALL PRIVILEGES", All: true},
	{Privilege: PrivBrowse, SQL: "BROWSE", NoOwnUse: true},
	{Privilege: PrivCreateCatalog, SQL: "CREATE CATALOG"},
	{Privilege: PrivCreateConnection, SQL: "CREATE CONNECTION"},
	{Privilege: PrivCreateSchema, SQL: "CREATE SCHEMA"},
	{Privilege: PrivManage, SQL: "MANAGE", NotInAll: true},
	{Privilege: PrivUseCatalog, SQL: "USE CATALOG"},
	{Privilege: PrivUseConnection, SQL: "USE CONNECTION"},
	{Privilege: PrivUseSchema, SQL: "USE SCHEMA"},
	{Privilege: PrivSelect, SQL: "SELECT"},
	{Privilege: PrivExecute, SQL: "EXECUTE"},
	{Privilege: PrivCreateService, SQL: "CREATE SERVICE"},
}

// numPrivs is the number of privileges; a PrivSet holds at most 32.
const numPrivs = len(privileges)

var _ [32 - numPrivs]struct{} // compile-time bound: PrivSet is 32 bits

// KnownPrivileges returns every privilege name the catalog knows, in
// index order.
func KnownPrivileges() []Privilege {
	out := make([]Privilege, numPrivs)
	for i := range privileges {
		out[i] = privileges[i].Privilege
	}
	return out
}

// ParsePrivilege accepts both spellings (USE_CONNECTION and USE CONNECTION),
// any case, and returns the canonical form.
func ParsePrivilege(s string) (Privilege, error) {
	f := strings.ToUpper(strings.Join(strings.Fields(strings.ReplaceAll(s, "_", " ")), "_"))
	if f == "ALL" {
		f = string(PrivAll)
	}
	if i := PrivilegeIndex(Privilege(f)); i >= 0 {
		return privileges[i].Privilege, nil
	}
	return "", Errorf(CodeInvalidPrivilege, "unknown privilege %q", s)
}

// SQL returns the privilege in SQL spelling (spaces), as SHOW GRANTS prints it.
func (p Privilege) SQL() string {
	if i := PrivilegeIndex(p); i >= 0 {
		return privileges[i].SQL
	}
	return strings.ReplaceAll(string(p), "_", " ")
}

// TypeInfo describes a securable type: its registry entry. The privilege
// evaluator, name resolution and the decision engine read everything they
// know about a type from here, so adding a securable type is one entry in
// typeRegistry.
type TypeInfo struct {
	Type SecurableType
	// Parent is the type of the container; "" for the metastore.
	Parent SecurableType
	// Privileges may be granted on securables of this type.
	Privileges []Privilege
	// UsePrivilege is the privilege a principal needs on a securable of this
	// type to use anything inside it ("" if none): USE_CATALOG, USE_SCHEMA.
	UsePrivilege Privilege
	// Inherited: grants on a securable of this type also apply to the
	// securables inside it (catalogs and schemas; never the metastore).
	Inherited bool
	// Named is true when the type is addressed by name in SQL.
	Named bool
	// Home is the schema (catalog, schema) a one-part name of this type
	// resolves in (system.ai for connections); nil: one-part names are
	// not accepted (beyond the type's own depth).
	Home []string
}

var typeRegistry = map[SecurableType]*TypeInfo{
	TypeMetastore: {Type: TypeMetastore, Privileges: []Privilege{PrivCreateCatalog}},
	TypeCatalog: {Type: TypeCatalog, Parent: TypeMetastore, Named: true, UsePrivilege: PrivUseCatalog, Inherited: true,
		Privileges: []Privilege{PrivAll, PrivBrowse, PrivCreateConnection, PrivCreateSchema, PrivCreateService, PrivExecute, PrivManage, PrivSelect, PrivUseCatalog, PrivUseConnection, PrivUseSchema}},
	TypeSchema: {Type: TypeSchema, Parent: TypeCatalog, Named: true, UsePrivilege: PrivUseSchema, Inherited: true,
		Privileges: []Privilege{PrivAll, PrivBrowse, PrivCreateConnection, PrivCreateService, PrivExecute, PrivManage, PrivSelect, PrivUseConnection, PrivUseSchema}},
	TypeConnection: {Type: TypeConnection, Parent: TypeSchema, Named: true, Home: []string{SystemCatalog, "ai"},
		Privileges: []Privilege{PrivAll, PrivManage, PrivUseConnection}},
	// SELECT on a table is also held through SELECT on its schema or
	// catalog (inheritance), with USE_CATALOG and USE_SCHEMA.
	TypeTable: {Type: TypeTable, Parent: TypeSchema, Named: true,
		Privileges: []Privilege{PrivAll, PrivManage, PrivSelect}},
	// EXECUTE on a model or provider service is also held through EXECUTE
	// on its schema or catalog (inheritance), with USE_CATALOG and
	// USE_SCHEMA, exactly as USE_CONNECTION on connections.
	TypeProviderService: {Type: TypeProviderService, Parent: TypeSchema, Named: true, Home: []string{SystemCatalog, "ai"},
		Privileges: []Privilege{PrivAll, PrivExecute, PrivManage}},
	TypeModelService: {Type: TypeModelService, Parent: TypeSchema, Named: true, Home: []string{SystemCatalog, "ai"},
		Privileges: []Privilege{PrivAll, PrivExecute, PrivManage}},
	// Policies are managed by whoever may manage what they are attached to;
	// nothing is granted on them.
	TypePolicy: {Type: TypePolicy, Named: true},
	// Access tokens, rate limits and budgets are attachments like
	// policies: not named in grants, nothing granted on them.
	TypeAccessToken: {Type: TypeAccessToken},
	TypeRateLimit:   {Type: TypeRateLimit},
	TypeBudget:      {Type: TypeBudget},
	// Tool pins belong to their connection; nothing is granted on them.
	TypeToolPin: {Type: TypeToolPin},
}

// IsAttachment reports whether securables of type t are attached to
// another securable rather than contained in it (policies, rate limits,
// budgets, access tokens, tool pins): they go with what they are attached to, do not
// make a container "not empty", and owning one does not keep a principal
// from being dropped (except policies, which name their author).
func IsAttachment(t SecurableType) bool {
	switch t {
	case TypePolicy, TypeAccessToken, TypeRateLimit, TypeBudget, TypeToolPin:
		return true
	}
	return false
}

// Depth is the number of parts of a full name of the type (catalog 1,
// schema 2, connection 3); 0 for the metastore and for types without a
// fixed container (policies).
func (ti *TypeInfo) Depth() int {
	d := 0
	for t := ti; t != nil && t.Parent != ""; t = typeRegistry[t.Parent] {
		d++
	}
	if ti.Parent == "" && ti.Type != TypeMetastore {
		return 0
	}
	return d
}

// LookupType returns the registry entry for t.
func LookupType(t SecurableType) (*TypeInfo, bool) {
	ti, ok := typeRegistry[t]
	return ti, ok
}

// Applies reports whether privilege p may be granted on type t.
func (ti *TypeInfo) Applies(p Privilege) bool {
	for _, q := range ti.Privileges {
		if q == p {
			return true
		}
	}
	return false
}

// PrivilegeNames returns the SQL spellings of the applicable privileges.
func (ti *TypeInfo) PrivilegeNames() string {
	s := make([]string, len(ti.Privileges))
	for i, p := range ti.Privileges {
		s[i] = p.SQL()
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// QuoteIdent quotes a name for display when it is not a plain lower-case identifier.
func QuoteIdent(s string) string {
	plain := s != ""
	for i, r := range s {
		if !(r == '_' || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

func (k PrincipalKind) String() string { return string(k) }

func (p *Principal) String() string { return fmt.Sprintf("%s %s", p.Kind, QuoteIdent(p.Name)) }
