package parser

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

func str(s string) *string { return &s }

// id is an unquoted identifier, qid a quoted one.
func id(name string) Ident  { return Ident{Name: name} }
func qid(name string) Ident { return Ident{Name: name, Quoted: true} }

func qn(parts ...Ident) QName { return QName(parts) }

func idp(i Ident) *Ident { return &i }

func privs(p ...catalog.Privilege) []catalog.Privilege { return p }

type validCase struct {
	sql  string
	want Statement
}

// validCases are statements that parse, with their expected ASTs.
func validCases() []validCase {
	return []validCase{
		// The README examples, verbatim.
		{`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";`,
			&Grant{Privileges: privs(catalog.PrivUseConnection), On: SecurableRef{Type: ObjConnection, Name: qn(id("my_github_mcp"))}, To: []Ident{qid("data-analysts")}}},
		{`GRANT USE_CONNECTION ON CONNECTION my_salesforce_mcp TO "sales-team";`,
			&Grant{Privileges: privs(catalog.PrivUseConnection), On: SecurableRef{Type: ObjConnection, Name: qn(id("my_salesforce_mcp"))}, To: []Ident{qid("sales-team")}}},
		{`REVOKE USE_CONNECTION ON CONNECTION my_prod_db_mcp FROM "contractors";`,
			&Revoke{Privileges: privs(catalog.PrivUseConnection), On: SecurableRef{Type: ObjConnection, Name: qn(id("my_prod_db_mcp"))}, From: []Ident{qid("contractors")}}},
		{"CREATE CONNECTION my_github_mcp TYPE MCP\n  OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org')\n  COMMENT 'GitHub MCP server';",
			&CreateConnection{Name: qn(id("my_github_mcp")), Type: "MCP", Options: []Option{
				{"url", "https://mcp.github.example/mcp"}, {"auth_mode", "per_user_oauth"}, {"scopes", "repo read:org"}},
				Comment: str("GitHub MCP server")}},
		{`ALTER GROUP "data-analysts" ADD USER "alice@example.com"`,
			&AlterGroupMembers{Group: qid("data-analysts"), Add: true, MemberType: ObjUser, Members: []Ident{qid("alice@example.com")}}},

		// CREATE CATALOG / SCHEMA / CONNECTION.
		{`CREATE CATALOG main`, &CreateCatalog{Name: id("main")}},
		{`create catalog IF NOT EXISTS Main comment 'it''s main'`, &CreateCatalog{Name: id("main"), IfNotExists: true, Comment: str("it's main")}},
		{"CREATE CATALOG `Prod Catalog`", &CreateCatalog{Name: qid("Prod Catalog")}},
		{`CREATE CATALOG "a""b"`, &CreateCatalog{Name: qid(`a"b`)}},
		{"CREATE CATALOG `a``b`", &CreateCatalog{Name: qid("a`b")}},
		{`CREATE CATALOG if`, &CreateCatalog{Name: id("if")}},
		{`CREATE CATALOG IF NOT EXISTS if COMMENT $$x;y$$`, &CreateCatalog{Name: id("if"), IfNotExists: true, Comment: str("x;y")}},
		{`CREATE CATALOG catalog COMMENT $c$it's$c$`, &CreateCatalog{Name: id("catalog"), Comment: str("it's")}},
		{`CREATE CATALOG "on"`, &CreateCatalog{Name: qid("on")}},
		{`CREATE CATALOG café`, &CreateCatalog{Name: id("café")}},
		{`CREATE CATALOG a$1 COMMENT E'line\nnext\x41\u00e9'`, &CreateCatalog{Name: id("a$1"), Comment: str("line\nnextAé")}},
		{`CREATE SCHEMA main.sales`, &CreateSchema{Name: qn(id("main"), id("sales"))}},
		{`CREATE SCHEMA IF NOT EXISTS sales COMMENT ''`, &CreateSchema{Name: qn(id("sales")), IfNotExists: true, Comment: str("")}},
		{"CREATE SCHEMA `main` . \"Sales\"", &CreateSchema{Name: qn(qid("main"), qid("Sales"))}},
		{`CREATE CONNECTION IF NOT EXISTS main.tools.status TYPE mcp`,
			&CreateConnection{Name: qn(id("main"), id("tools"), id("status")), IfNotExists: true, Type: "MCP"}},
		{`CREATE CONNECTION pg TYPE postgres OPTIONS ("Host" = 'db', user 'u', password 'p', type 't', "on" 'x') COMMENT 'db'`,
			&CreateConnection{Name: qn(id("pg")), Type: "POSTGRES", Options: []Option{
				{"Host", "db"}, {"user", "u"}, {"password", "p"}, {"type", "t"}, {"on", "x"}}, Comment: str("db")}},
		{`CREATE CONNECTION x TYPE "my-type"`, &CreateConnection{Name: qn(id("x")), Type: "MY-TYPE"}},

		// DROP.
		{`DROP CATALOG main`, &Drop{Type: ObjCatalog, Name: qn(id("main"))}},
		{`DROP CATALOG IF EXISTS main CASCADE`, &Drop{Type: ObjCatalog, Name: qn(id("main")), IfExists: true, Cascade: true}},
		{`DROP SCHEMA main.sales RESTRICT`, &Drop{Type: ObjSchema, Name: qn(id("main"), id("sales"))}},
		{`DROP SCHEMA if.exists`, &Drop{Type: ObjSchema, Name: qn(id("if"), id("exists"))}},
		{`DROP CONNECTION c.s.x`, &Drop{Type: ObjConnection, Name: qn(id("c"), id("s"), id("x"))}},
		{`DROP USER "bob@example.com"`, &Drop{Type: ObjUser, Name: qn(qid("bob@example.com"))}},
		{`DROP GROUP IF EXISTS analysts;`, &Drop{Type: ObjGroup, Name: qn(id("analysts")), IfExists: true}},
		{`DROP SERVICE PRINCIPAL etl_bot`, &Drop{Type: ObjServicePrincipal, Name: qn(id("etl_bot"))}},

		// ALTER.
		{`ALTER CATALOG main OWNER TO "admins"`, &AlterOwner{Type: ObjCatalog, Name: qn(id("main")), Owner: qid("admins")}},
		{`ALTER SCHEMA main.sales SET OWNER TO bob`, &AlterOwner{Type: ObjSchema, Name: qn(id("main"), id("sales")), Owner: id("bob")}},
		{`ALTER CONNECTION c.s.x SET OWNER TO bob`, &AlterOwner{Type: ObjConnection, Name: qn(id("c"), id("s"), id("x")), Owner: id("bob")}},
		{`ALTER CATALOG main RENAME TO prod`, &AlterRename{Type: ObjCatalog, Name: qn(id("main")), NewName: id("prod")}},
		{`ALTER SCHEMA main.sales RENAME TO "Sales"`, &AlterRename{Type: ObjSchema, Name: qn(id("main"), id("sales")), NewName: qid("Sales")}},
		{`ALTER CONNECTION x RENAME TO y`, &AlterRename{Type: ObjConnection, Name: qn(id("x")), NewName: id("y")}},
		{`ALTER CONNECTION x OPTIONS (url 'u')`, &AlterConnectionOptions{Name: qn(id("x")), Options: []Option{{"url", "u"}}}},
		{`ALTER CONNECTION s.x SET OPTIONS (url 'u', scopes '')`, &AlterConnectionOptions{Name: qn(id("s"), id("x")), Options: []Option{{"url", "u"}, {"scopes", ""}}}},
		{`ALTER USER alice WITH PASSWORD 'secret'`, &AlterPassword{Type: ObjUser, Name: id("alice"), Password: str("secret")}},
		{`ALTER USER alice PASSWORD NULL`, &AlterPassword{Type: ObjUser, Name: id("alice")}},
		{`ALTER SERVICE PRINCIPAL bot WITH PASSWORD 'x'`, &AlterPassword{Type: ObjServicePrincipal, Name: id("bot"), Password: str("x")}},
		{`ALTER GROUP analysts REMOVE GROUP interns, "Contractors"`,
			&AlterGroupMembers{Group: id("analysts"), MemberType: ObjGroup, Members: []Ident{id("interns"), qid("Contractors")}}},
		{`ALTER GROUP analysts ADD SERVICE PRINCIPAL bot`,
			&AlterGroupMembers{Group: id("analysts"), Add: true, MemberType: ObjServicePrincipal, Members: []Ident{id("bot")}}},

		// COMMENT ON.
		{`COMMENT ON CATALOG main IS 'the main one'`, &CommentOn{Type: ObjCatalog, Name: qn(id("main")), Comment: str("the main one")}},
		{`COMMENT ON SCHEMA main.sales IS NULL`, &CommentOn{Type: ObjSchema, Name: qn(id("main"), id("sales"))}},
		{`COMMENT ON CONNECTION a.b.c IS $$multi
line$$`, &CommentOn{Type: ObjConnection, Name: qn(id("a"), id("b"), id("c")), Comment: str("multi\nline")}},

		// CREATE USER / GROUP / SERVICE PRINCIPAL.
		{`CREATE USER "alice@example.com"`, &CreatePrincipal{Type: ObjUser, Name: qid("alice@example.com")}},
		{`CREATE USER IF NOT EXISTS bob WITH PASSWORD 'pw'`, &CreatePrincipal{Type: ObjUser, Name: id("bob"), IfNotExists: true, Password: str("pw")}},
		{`CREATE USER bob PASSWORD 'pw'`, &CreatePrincipal{Type: ObjUser, Name: id("bob"), Password: str("pw")}},
		{`CREATE GROUP "data-analysts"`, &CreatePrincipal{Type: ObjGroup, Name: qid("data-analysts")}},
		{`CREATE SERVICE PRINCIPAL etl WITH PASSWORD 'pw'`, &CreatePrincipal{Type: ObjServicePrincipal, Name: id("etl"), Password: str("pw")}},

		// GRANT / REVOKE.
		{`GRANT USE CONNECTION, use_catalog, USE SCHEMA ON CATALOG main TO analysts`,
			&Grant{Privileges: privs(catalog.PrivUseConnection, catalog.PrivUseCatalog, catalog.PrivUseSchema),
				On: SecurableRef{Type: ObjCatalog, Name: qn(id("main"))}, To: []Ident{id("analysts")}}},
		{`GRANT ALL PRIVILEGES ON SCHEMA main.sales TO "data-analysts", bob, "alice@example.com"`,
			&Grant{Privileges: privs(catalog.PrivAll), On: SecurableRef{Type: ObjSchema, Name: qn(id("main"), id("sales"))},
				To: []Ident{qid("data-analysts"), id("bob"), qid("alice@example.com")}}},
		{`GRANT ALL ON CONNECTION status TO user`,
			&Grant{Privileges: privs(catalog.PrivAll), On: SecurableRef{Type: ObjConnection, Name: qn(id("status"))}, To: []Ident{id("user")}}},
		{`GRANT CREATE CATALOG, CREATE_CONNECTION ON METASTORE TO admins`,
			&Grant{Privileges: privs(catalog.PrivCreateCatalog, catalog.PrivCreateConnection), On: SecurableRef{Type: ObjMetastore}, To: []Ident{id("admins")}}},
		{"GRANT BROWSE, MANAGE ON CATALOG `Main` TO `team a`",
			&Grant{Privileges: privs(catalog.PrivBrowse, catalog.PrivManage), On: SecurableRef{Type: ObjCatalog, Name: qn(qid("Main"))}, To: []Ident{qid("team a")}}},
		{`REVOKE CREATE SCHEMA, BROWSE ON CATALOG main FROM a, b`,
			&Revoke{Privileges: privs(catalog.PrivCreateSchema, catalog.PrivBrowse), On: SecurableRef{Type: ObjCatalog, Name: qn(id("main"))}, From: []Ident{id("a"), id("b")}}},

		// SHOW.
		{`SHOW GRANTS ON CATALOG main`, &ShowGrants{On: &SecurableRef{Type: ObjCatalog, Name: qn(id("main"))}}},
		{`SHOW GRANTS ON METASTORE`, &ShowGrants{On: &SecurableRef{Type: ObjMetastore}}},
		{`SHOW GRANTS "data-analysts" ON CONNECTION my_github_mcp`,
			&ShowGrants{Principal: idp(qid("data-analysts")), On: &SecurableRef{Type: ObjConnection, Name: qn(id("my_github_mcp"))}}},
		{`SHOW GRANTS bob ON SCHEMA main.sales`, &ShowGrants{Principal: idp(id("bob")), On: &SecurableRef{Type: ObjSchema, Name: qn(id("main"), id("sales"))}}},
		{`SHOW GRANTS TO "alice@example.com"`, &ShowGrants{To: idp(qid("alice@example.com"))}},
		{`SHOW CATALOGS`, &ShowObjects{What: "CATALOGS"}},
		{`SHOW SCHEMAS`, &ShowObjects{What: "SCHEMAS"}},
		{`SHOW SCHEMAS IN main`, &ShowObjects{What: "SCHEMAS", In: qn(id("main"))}},
		{`SHOW SCHEMAS FROM "Main"`, &ShowObjects{What: "SCHEMAS", In: qn(qid("Main"))}},
		{`SHOW CONNECTIONS`, &ShowObjects{What: "CONNECTIONS"}},
		{`SHOW CONNECTIONS IN main.tools`, &ShowObjects{What: "CONNECTIONS", In: qn(id("main"), id("tools"))}},
		{`SHOW CONNECTIONS FROM main`, &ShowObjects{What: "CONNECTIONS", In: qn(id("main"))}},
		{`show users;`, &ShowObjects{What: "USERS"}},
		{`SHOW GROUPS`, &ShowObjects{What: "GROUPS"}},
		{`SHOW SERVICE PRINCIPALS`, &ShowObjects{What: "SERVICE PRINCIPALS"}},
		{`SHOW REVISION`, &ShowRevision{}},
		{`SHOW CONNECTION STATUS`, &ShowConnectionStatus{}},
		{`show connection status for "alice@example.com"`, &ShowConnectionStatus{For: &Ident{Name: "alice@example.com", Quoted: true}}},
		{`SHOW POLICIES`, &ShowPolicies{}},
		{`SHOW POLICIES ON SCHEMA eng.tools`, &ShowPolicies{On: &SecurableRef{Type: ObjSchema, Name: QName{{Name: "eng"}, {Name: "tools"}}}}},
		{`DROP POLICY IF EXISTS no_deletes`, &Drop{Type: ObjPolicy, IfExists: true, Name: QName{{Name: "no_deletes"}}}},
		{"CREATE POLICY no_deletes ON CONNECTION my_github_mcp AS $$\npackage mandate\ndeny contains msg if { input.tool == \"delete_repo\"; msg := \"no\" }\n$$",
			&CreatePolicy{Name: Ident{Name: "no_deletes"}, On: SecurableRef{Type: ObjConnection, Name: QName{{Name: "my_github_mcp"}}},
				Source: "\npackage mandate\ndeny contains msg if { input.tool == \"delete_repo\"; msg := \"no\" }\n"}},
		{`CREATE POLICY p ON CATALOG eng AS 'package p
deny contains "it''s late" if { false }'`,
			&CreatePolicy{Name: Ident{Name: "p"}, On: SecurableRef{Type: ObjCatalog, Name: QName{{Name: "eng"}}},
				Source: "package p\ndeny contains \"it's late\" if { false }"}},
		{`EXPLAIN ACCESS FOR "alice@example.com" VIA "coding-agent" USE_CONNECTION ON CONNECTION my_github_mcp`,
			&ExplainAccess{Subject: Ident{Name: "alice@example.com", Quoted: true}, Actor: &Ident{Name: "coding-agent", Quoted: true},
				Privilege: catalog.PrivUseConnection, On: SecurableRef{Type: ObjConnection, Name: QName{{Name: "my_github_mcp"}}}}},
		{`explain access for bob use schema on schema eng.tools`,
			&ExplainAccess{Subject: Ident{Name: "bob"}, Privilege: catalog.PrivUseSchema,
				On: SecurableRef{Type: ObjSchema, Name: QName{{Name: "eng"}, {Name: "tools"}}}}},

		// DESCRIBE.
		{`DESCRIBE CATALOG main`, &Describe{Type: ObjCatalog, Name: qn(id("main"))}},
		{`DESC SCHEMA main.sales`, &Describe{Type: ObjSchema, Name: qn(id("main"), id("sales"))}},
		{`DESCRIBE CONNECTION c.s.x`, &Describe{Type: ObjConnection, Name: qn(id("c"), id("s"), id("x"))}},
		{`DESCRIBE USER "alice@example.com"`, &Describe{Type: ObjUser, Name: qn(qid("alice@example.com"))}},
		{`DESCRIBE GROUP analysts`, &Describe{Type: ObjGroup, Name: qn(id("analysts"))}},
		{`DESCRIBE SERVICE PRINCIPAL bot`, &Describe{Type: ObjServicePrincipal, Name: qn(id("bot"))}},

		// Model services, access tokens, rate limits and budgets: the
		// issue's examples, verbatim.
		{`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url 'https://api.openai.com/v1', api_key '...', prices 'gpt-4.1=2.00/8.00/0.50, gpt-4.1-mini=0.40/1.60/0.10')`,
			&CreateService{Type: ObjProviderService, Name: qn(id("system"), id("ai"), id("openai_prod")), Options: []Option{{"provider", "openai"},
				{"url", "https://api.openai.com/v1"}, {"api_key", "..."}, {"prices", "gpt-4.1=2.00/8.00/0.50, gpt-4.1-mini=0.40/1.60/0.10"}}}},
		{`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=20', fallbacks 'anthropic_prod/claude-sonnet-4-5', timeout '120s')`,
			&CreateService{Type: ObjModelService, Name: qn(id("system"), id("ai"), id("frontier")), Options: []Option{
				{"destinations", "openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=20"}, {"fallbacks", "anthropic_prod/claude-sonnet-4-5"}, {"timeout", "120s"}}}},
		{`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "data-analysts"`,
			&Grant{Privileges: privs(catalog.PrivExecute), On: SecurableRef{Type: ObjModelService, Name: qn(id("system"), id("ai"), id("frontier"))}, To: []Ident{qid("data-analysts")}}},
		{`GRANT CREATE SERVICE ON SCHEMA eng.llm TO bob`,
			&Grant{Privileges: privs(catalog.PrivCreateService), On: SecurableRef{Type: ObjSchema, Name: qn(id("eng"), id("llm"))}, To: []Ident{id("bob")}}},
		{`SHOW MODEL SERVICES`, &ShowObjects{What: "MODEL SERVICES"}},
		{`SHOW MODEL PROVIDER SERVICES IN system.ai`, &ShowObjects{What: "MODEL PROVIDER SERVICES", In: qn(id("system"), id("ai"))}},
		{`DESCRIBE MODEL SERVICE frontier`, &Describe{Type: ObjModelService, Name: qn(id("frontier"))}},
		{`DESCRIBE MODEL PROVIDER SERVICE system.ai.openai_prod`, &Describe{Type: ObjProviderService, Name: qn(id("system"), id("ai"), id("openai_prod"))}},
		{`SHOW GRANTS ON MODEL SERVICE frontier`, &ShowGrants{On: &SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}}},
		{`EXPLAIN ACCESS FOR "u" VIA "a" EXECUTE ON MODEL SERVICE x`,
			&ExplainAccess{Subject: qid("u"), Actor: idp(qid("a")), Privilege: catalog.PrivExecute, On: SecurableRef{Type: ObjModelService, Name: qn(id("x"))}}},
		{`DROP MODEL PROVIDER SERVICE IF EXISTS p`, &Drop{Type: ObjProviderService, Name: qn(id("p")), IfExists: true}},
		{`ALTER MODEL SERVICE frontier OWNER TO bob`, &AlterOwner{Type: ObjModelService, Name: qn(id("frontier")), Owner: id("bob")}},
		{`ALTER MODEL SERVICE frontier RENAME TO frontier2`, &AlterRename{Type: ObjModelService, Name: qn(id("frontier")), NewName: id("frontier2")}},
		{`ALTER MODEL PROVIDER SERVICE p SET OPTIONS (provider 'anthropic', api_key 'k')`,
			&AlterServiceOptions{Type: ObjProviderService, Name: qn(id("p")), Options: []Option{{"provider", "anthropic"}, {"api_key", "k"}}}},
		{`COMMENT ON MODEL SERVICE frontier IS 'the big ones'`, &CommentOn{Type: ObjModelService, Name: qn(id("frontier")), Comment: str("the big ones")}},
		{`CREATE POLICY small ON MODEL SERVICE frontier AS 'package p'`,
			&CreatePolicy{Name: id("small"), On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, Source: "package p"}},
		{`ALTER MODEL SERVICE frontier SET RATE LIMIT 1000 REQUESTS PER MINUTE`,
			&SetRateLimit{On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, Requests: 1000, For: LimitTarget{Level: catalog.LevelService}}},
		{`ALTER MODEL SERVICE frontier SET RATE LIMIT 60 REQUESTS, 200000 TOKENS PER MINUTE FOR EACH USER`,
			&SetRateLimit{On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, Requests: 60, Tokens: 200000, For: LimitTarget{Level: catalog.LevelEachUser}}},
		{`ALTER MODEL SERVICE frontier SET RATE LIMIT 5000 TOKENS PER MINUTE FOR USER "x"`,
			&SetRateLimit{On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, Tokens: 5000, For: LimitTarget{Level: catalog.LevelUser, Principal: idp(qid("x"))}}},
		{`ALTER CONNECTION c SET RATE LIMIT 10 REQUESTS PER MINUTE FOR SERVICE PRINCIPAL "x"`,
			&SetRateLimit{On: SecurableRef{Type: ObjConnection, Name: qn(id("c"))}, Requests: 10, For: LimitTarget{Level: catalog.LevelServicePrincipal, Principal: idp(qid("x"))}}},
		{`ALTER MODEL SERVICE frontier SET RATE LIMIT 10 REQUESTS PER MINUTE FOR GROUP "x"`,
			&SetRateLimit{On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, Requests: 10, For: LimitTarget{Level: catalog.LevelGroup, Principal: idp(qid("x"))}}},
		{`ALTER MODEL SERVICE frontier DROP RATE LIMIT FOR GROUP "x"`,
			&DropRateLimit{On: SecurableRef{Type: ObjModelService, Name: qn(id("frontier"))}, For: LimitTarget{Level: catalog.LevelGroup, Principal: idp(qid("x"))}}},
		{`ALTER CONNECTION c DROP RATE LIMIT IF EXISTS`,
			&DropRateLimit{On: SecurableRef{Type: ObjConnection, Name: qn(id("c"))}, IfExists: true, For: LimitTarget{Level: catalog.LevelService}}},
		{`SHOW RATE LIMITS ON MODEL SERVICE x`, &ShowRateLimits{On: &SecurableRef{Type: ObjModelService, Name: qn(id("x"))}}},
		{`SHOW RATE LIMITS ON CONNECTION c`, &ShowRateLimits{On: &SecurableRef{Type: ObjConnection, Name: qn(id("c"))}}},
		{`CREATE ACCESS TOKEN laptop FOR USER "alice@example.com" VIA "claude-code" EXPIRES IN '90 days' COMMENT 'my laptop'`,
			&CreateAccessToken{Name: idp(id("laptop")), User: idp(qid("alice@example.com")), Via: idp(qid("claude-code")), ExpiresIn: str("90 days"), Comment: str("my laptop")}},
		{`CREATE ACCESS TOKEN FOR USER "alice@example.com"`, &CreateAccessToken{User: idp(qid("alice@example.com"))}},
		{`CREATE ACCESS TOKEN via VIA agent`, &CreateAccessToken{Name: idp(id("via")), Via: idp(id("agent"))}},
		{`SHOW ACCESS TOKENS FOR USER "alice@example.com"`, &ShowAccessTokens{For: idp(qid("alice@example.com"))}},
		{`DROP ACCESS TOKEN laptop`, &Drop{Type: ObjAccessToken, Name: qn(id("laptop"))}},
		{`CREATE BUDGET analysts LIMIT 500 USD PER MONTH FOR GROUP "data-analysts" ON MODEL SERVICE x WHERE TAG project = 'checkout'`,
			&CreateBudget{Name: id("analysts"), Limit: "500", For: LimitTarget{Level: catalog.LevelGroup, Principal: idp(qid("data-analysts"))},
				On: &SecurableRef{Type: ObjModelService, Name: qn(id("x"))}, Tags: []TagCond{{Key: id("project"), Value: "checkout"}}}},
		{`CREATE BUDGET IF NOT EXISTS each LIMIT 12.5 USD PER MONTH FOR EACH USER WHERE TAG a = 'b' AND TAG "c.d" = 'e' COMMENT 'x'`,
			&CreateBudget{Name: id("each"), IfNotExists: true, Limit: "12.5", For: LimitTarget{Level: catalog.LevelEachUser},
				Tags: []TagCond{{Key: id("a"), Value: "b"}, {Key: qid("c.d"), Value: "e"}}, Comment: str("x")}},
		{`SHOW BUDGETS`, &ShowBudgets{}},
		{`DROP BUDGET IF EXISTS analysts`, &Drop{Type: ObjBudget, Name: qn(id("analysts")), IfExists: true}},

		// Comments and whitespace.
		{"/* leading /* nested */ comment */ SHOW -- trailing\n CATALOGS ; -- done", &ShowObjects{What: "CATALOGS"}},
	}
}

func TestParseStatement(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.sql, func(t *testing.T) {
			got, err := ParseStatement(tc.sql)
			if err != nil {
				t.Fatalf("ParseStatement: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("AST mismatch\n got: %#v\nwant: %#v", got, tc.want)
			}
			checkRoundTrip(t, got)
		})
	}
}

// checkRoundTrip parses stmt.String() and requires an equal AST and a
// stable canonical text.
func checkRoundTrip(t testing.TB, stmt Statement) {
	t.Helper()
	text := stmt.String()
	again, err := ParseStatement(text)
	if err != nil {
		t.Fatalf("re-parse of %q: %v", text, err)
	}
	if !reflect.DeepEqual(again, stmt) {
		t.Fatalf("re-parse of %q differs\n got: %#v\nwant: %#v", text, again, stmt)
	}
	if again.String() != text {
		t.Fatalf("String not stable: %q then %q", text, again.String())
	}
}

func TestString(t *testing.T) {
	tests := []struct{ sql, want string }{
		{`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";`,
			`GRANT USE CONNECTION ON CONNECTION my_github_mcp TO "data-analysts"`},
		{`grant all, create_catalog on metastore to a,b`, `GRANT ALL PRIVILEGES, CREATE CATALOG ON METASTORE TO a, b`},
		{"CREATE CONNECTION my_github_mcp TYPE MCP\n  OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org')\n  COMMENT 'GitHub MCP server';",
			`CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org') COMMENT 'GitHub MCP server'`},
		{`create connection x type "a b" options ("Key" = 'it''s', "on" 'v')`, `CREATE CONNECTION x TYPE "A B" OPTIONS ("Key" 'it''s', "on" 'v')`},
		{"CREATE CATALOG `main`", `CREATE CATALOG "main"`},
		{`CREATE CATALOG if not exists If`, `CREATE CATALOG IF NOT EXISTS if`},
		{`DROP SCHEMA IF EXISTS a.b RESTRICT`, `DROP SCHEMA IF EXISTS a.b`},
		{`ALTER SCHEMA a.b SET OWNER TO x`, `ALTER SCHEMA a.b OWNER TO x`},
		{`ALTER CONNECTION x SET OPTIONS (a 'b')`, `ALTER CONNECTION x OPTIONS (a 'b')`},
		{`ALTER USER u PASSWORD 'p'`, `ALTER USER u WITH PASSWORD 'p'`},
		{`ALTER USER u WITH PASSWORD NULL`, `ALTER USER u WITH PASSWORD NULL`},
		{`CREATE USER u PASSWORD NULL`, `CREATE USER u`},
		{`COMMENT ON CATALOG c IS E'a\'b'`, `COMMENT ON CATALOG c IS 'a''b'`},
		{`ALTER GROUP g remove user a,b`, `ALTER GROUP g REMOVE USER a, b`},
		{`SHOW SCHEMAS FROM c`, `SHOW SCHEMAS IN c`},
		{`DESC USER u`, `DESCRIBE USER u`},
		{`SHOW GRANTS user ON CATALOG c`, `SHOW GRANTS user ON CATALOG c`},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			stmt, err := ParseStatement(tc.sql)
			if err != nil {
				t.Fatalf("ParseStatement: %v", err)
			}
			if got := stmt.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestKind(t *testing.T) {
	tests := []struct{ sql, want string }{
		{`CREATE CATALOG c`, "CREATE CATALOG"},
		{`CREATE SERVICE PRINCIPAL p`, "CREATE SERVICE PRINCIPAL"},
		{`DROP CONNECTION x`, "DROP CONNECTION"},
		{`ALTER SCHEMA s RENAME TO t`, "ALTER SCHEMA"},
		{`ALTER USER u PASSWORD NULL`, "ALTER USER"},
		{`ALTER GROUP g ADD USER u`, "ALTER GROUP"},
		{`COMMENT ON CATALOG c IS NULL`, "COMMENT"},
		{`GRANT BROWSE ON CATALOG c TO u`, "GRANT"},
		{`REVOKE BROWSE ON CATALOG c FROM u`, "REVOKE"},
		{`SHOW GRANTS TO u`, "SHOW GRANTS"},
		{`SHOW SERVICE PRINCIPALS`, "SHOW SERVICE PRINCIPALS"},
		{`DESC GROUP g`, "DESCRIBE GROUP"},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			stmt, err := ParseStatement(tc.sql)
			if err != nil {
				t.Fatalf("ParseStatement: %v", err)
			}
			if got := stmt.Kind(); got != tc.want {
				t.Fatalf("Kind() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		sql      string
		pos      int
		found    string
		expected []string
		message  string // substring of Message; "" means Message must be empty
	}{
		{``, 0, "end of input", []string{"CREATE", "DROP", "ALTER", "COMMENT", "GRANT", "REVOKE", "SHOW", "DESCRIBE", "EXPLAIN"}, ""},
		{`SELECT 1`, 0, "SELECT", []string{"CREATE", "DROP", "ALTER", "COMMENT", "GRANT", "REVOKE", "SHOW", "DESCRIBE", "EXPLAIN"}, ""},
		{`CREATE TABLE t`, 7, "TABLE", []string{"POLICY", "BUDGET", "ACCESS TOKEN", "CATALOG", "SCHEMA", "CONNECTION", "MODEL SERVICE", "MODEL PROVIDER SERVICE", "USER", "GROUP", "SERVICE PRINCIPAL"}, ""},
		{`CREATE CATALOG`, 14, "end of input", []string{"IF", "identifier"}, ""},
		{`CREATE CATALOG on`, 15, "on", []string{"IF", "identifier"}, ""},
		{`CREATE CATALOG IF NOT main`, 22, "main", []string{"EXISTS"}, ""},
		{`CREATE CATALOG c extra`, 17, "extra", []string{"COMMENT", `";"`, "end of input"}, ""},
		{`CREATE CATALOG a.b`, 16, ".", nil, "improper qualified name"},
		{`CREATE SCHEMA a.b.c`, 17, ".", nil, "improper qualified name"},
		{`CREATE SCHEMA a.`, 16, "end of input", []string{"identifier"}, ""},
		{`CREATE CATALOG c COMMENT x`, 25, "x", []string{"string literal"}, ""},
		{`CREATE CATALOG c; SHOW USERS`, 18, "SHOW", []string{"end of input"}, ""},
		{`CREATE CATALOG 'c'`, 15, "'c'", []string{"IF", "identifier"}, ""},
		{`CREATE CATALOG "c`, 15, `"c`, nil, "unterminated quoted identifier"},
		{`CREATE CATALOG ""`, 15, `""`, nil, "zero-length delimited identifier"},
		{`CREATE CATALOG c COMMENT 'abc`, 25, `'abc`, nil, "unterminated quoted string"},
		{`CREATE CATALOG c COMMENT $x$abc`, 25, `$x$abc`, nil, "unterminated dollar-quoted string"},
		{`CREATE CATALOG c /* abc`, 17, `/* abc`, nil, "unterminated /* comment"},
		{`CREATE CATALOG c COMMENT E'\u12'`, 25, `E'\u12'`, nil, "invalid Unicode escape"},
		{`CREATE CATALOG c@`, 16, "@", nil, "unexpected character"},
		{`CREATE CONNECTION x OPTIONS (a 'b')`, 20, "OPTIONS", []string{`"."`, "TYPE"}, ""},
		{`CREATE CONNECTION x TYPE`, 24, "end of input", []string{"connection type"}, ""},
		{`CREATE CONNECTION x TYPE mcp OPTIONS ()`, 38, ")", []string{"option name"}, ""},
		{`CREATE CONNECTION x TYPE mcp OPTIONS (a b)`, 40, "b", []string{`"="`, "string literal"}, ""},
		{`CREATE CONNECTION x TYPE mcp OPTIONS (a 'b' c 'd')`, 44, "c", []string{`","`, `")"`}, ""},
		{`CREATE CONNECTION x TYPE mcp OPTIONS (a 'b', A 'd')`, 45, "A", nil, `option "a" specified more than once`},
		{`CREATE CONNECTION a.b.c.d TYPE mcp`, 23, ".", nil, "improper qualified name (at most 3 dotted parts)"},
		{`CREATE GROUP g WITH PASSWORD 'x'`, 15, "WITH", nil, "cannot have a password"},
		{`CREATE GROUP g PASSWORD 'x'`, 15, "PASSWORD", nil, "cannot have a password"},
		{`CREATE USER u WITH 'x'`, 19, "'x'", []string{"PASSWORD"}, ""},
		{`DROP TABLE t`, 5, "TABLE", []string{"POLICY", "CATALOG", "SCHEMA", "CONNECTION", "MODEL SERVICE", "MODEL PROVIDER SERVICE", "USER", "GROUP", "SERVICE PRINCIPAL", "ACCESS TOKEN", "BUDGET"}, ""},
		{`DROP SERVICE x`, 13, "x", []string{"PRINCIPAL"}, ""},
		{`DROP USER a.b`, 11, ".", nil, "improper qualified name"},
		{`DROP CATALOG c CASCADE RESTRICT`, 23, "RESTRICT", []string{`";"`, "end of input"}, ""},
		{`ALTER CATALOG c`, 15, "end of input", []string{"SET", "OWNER", "RENAME"}, ""},
		{`ALTER CONNECTION c`, 18, "end of input", []string{`"."`, "SET", "APPROVE", "OPTIONS", "DROP", "OWNER", "RENAME"}, ""},
		{`ALTER CATALOG c SET RENAME TO d`, 20, "RENAME", []string{"OWNER"}, ""},
		{`ALTER SCHEMA c.s OWNER x`, 23, "x", []string{"TO"}, ""},
		{`ALTER SCHEMA c.s RENAME TO c.t`, 28, ".", nil, "improper qualified name"},
		{`ALTER USER u`, 12, "end of input", []string{"WITH", "PASSWORD"}, ""},
		{`ALTER USER u PASSWORD`, 21, "end of input", []string{"NULL", "string literal"}, ""},
		{`ALTER GROUP g ADD x`, 18, "x", []string{"USER", "GROUP", "SERVICE PRINCIPAL"}, ""},
		{`ALTER GROUP g DROP USER x`, 14, "DROP", []string{"ADD", "REMOVE"}, ""},
		{`ALTER GROUP g ADD USER a,`, 25, "end of input", []string{"identifier"}, ""},
		{`COMMENT ON TABLE t IS 'x'`, 11, "TABLE", []string{"CATALOG", "SCHEMA", "CONNECTION", "MODEL SERVICE", "MODEL PROVIDER SERVICE"}, ""},
		{`COMMENT ON CATALOG c 'x'`, 21, "'x'", []string{"IS"}, ""},
		{`COMMENT CATALOG c IS 'x'`, 8, "CATALOG", []string{"ON"}, ""},
		{`GRANT MODIFY ON TABLE t TO u`, 6, "MODIFY", nil, `unknown privilege "MODIFY"`},
		{`GRANT USE CONNECTION, USE FOO ON CATALOG c TO u`, 22, "USE FOO", nil, `unknown privilege "USE FOO"`},
		{`GRANT ON CATALOG c TO u`, 6, "ON", []string{"privilege"}, ""},
		{`GRANT USE CONNECTION TO u`, 21, "TO", []string{`","`, "ON"}, ""},
		{`GRANT USE CONNECTION ON VOLUME t TO u`, 24, "VOLUME", []string{"METASTORE", "CATALOG", "SCHEMA", "CONNECTION", "MODEL SERVICE", "MODEL PROVIDER SERVICE", "TABLE"}, ""},
		{`GRANT USE CONNECTION ON CONNECTION x FROM u`, 37, "FROM", []string{`"."`, "TO"}, ""},
		{`REVOKE USE CONNECTION ON CONNECTION a.b.c TO u`, 42, "TO", []string{"FROM"}, ""},
		{`GRANT BROWSE ON CATALOG c TO u,`, 31, "end of input", []string{"identifier"}, ""},
		{`GRANT BROWSE ON CATALOG c TO u v`, 31, "v", []string{`","`, `";"`, "end of input"}, ""},
		{`SHOW TABLES`, 5, "TABLES", []string{"GRANTS", "CATALOGS", "SCHEMAS", "CONNECTIONS", "USERS", "GROUPS", "SERVICE PRINCIPALS", "REVISION", "POLICIES", "CONNECTION STATUS", "MODEL SERVICES", "MODEL PROVIDER SERVICES", "RATE LIMITS", "ACCESS TOKENS", "BUDGETS", "TOOLS"}, ""},
		{`SHOW GRANTS`, 11, "end of input", []string{"TO", "ON", "identifier"}, ""},
		{`SHOW GRANTS u`, 13, "end of input", []string{"ON"}, ""},
		{`SHOW GRANTS TO ON CATALOG c`, 15, "ON", []string{"identifier"}, ""},
		{`SHOW SERVICE USERS`, 13, "USERS", []string{"PRINCIPALS"}, ""},
		{`SHOW SCHEMAS IN a.b`, 17, ".", nil, "improper qualified name"},
		{`SHOW CATALOGS LIKE 'x'`, 14, "LIKE", []string{`";"`, "end of input"}, ""},
		{`DESCRIBE TABLE t`, 9, "TABLE", []string{"CATALOG", "SCHEMA", "CONNECTION", "MODEL SERVICE", "MODEL PROVIDER SERVICE", "USER", "GROUP", "SERVICE PRINCIPAL"}, ""},
		{`ALTER MODEL SERVICE f SET RATE LIMIT 10 PER MINUTE`, 40, "PER", []string{"REQUESTS", "TOKENS"}, ""},
		{`ALTER MODEL SERVICE f SET RATE LIMIT 0 REQUESTS PER MINUTE`, 37, "0", nil, "must be a positive integer"},
		{`ALTER MODEL SERVICE f SET RATE LIMIT 1 REQUESTS, 2 REQUESTS PER MINUTE`, 49, "2", nil, "REQUESTS given more than once"},
		{`ALTER MODEL SERVICE f SET RATE LIMIT 1 REQUESTS PER HOUR`, 52, "HOUR", []string{"MINUTE"}, ""},
		{`ALTER MODEL PROVIDER SERVICE p SET RATE LIMIT 1 REQUESTS PER MINUTE`, 35, "RATE", []string{"OPTIONS", "OWNER"}, ""},
		{`ALTER CONNECTION c DROP RATE LIMIT FOR EVERYONE`, 39, "EVERYONE", []string{"EACH USER", "USER", "GROUP", "SERVICE PRINCIPAL"}, ""},
		{`CREATE BUDGET b LIMIT 500 USD PER MONTH`, 39, "end of input", []string{"FOR"}, ""},
		{`CREATE BUDGET b LIMIT 1.2345678901 USD PER MONTH FOR EACH USER`, 22, "1.2345678901", nil, "at most 9 decimal places"},
		{`CREATE BUDGET b LIMIT 5 USD PER MONTH FOR USER u ON CONNECTION c`, 52, "CONNECTION", []string{"MODEL SERVICE"}, ""},
		{`CREATE BUDGET b LIMIT 5 USD PER MONTH FOR USER u WHERE project = 'x'`, 55, "project", []string{"TAG"}, ""},
		{`GRANT EXECUTE ON MODEL x TO u`, 23, "x", []string{"PROVIDER", "SERVICE"}, ""},
		{`SHOW ACCESS TOKENS FOR u`, 23, "u", []string{"USER"}, ""},
		{`CREATE POLICY p ON MODEL PROVIDER SERVICE x AS 'y'`, 44, "AS", nil, "policies attach to"},
		{`SHOW USERS; ;`, 12, ";", []string{"end of input"}, ""},
		{`SHOW USERS $1`, 11, "$1", nil, "unexpected parameter"},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			stmt, err := ParseStatement(tc.sql)
			if err == nil {
				t.Fatalf("ParseStatement succeeded: %s", stmt)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.Pos != tc.pos || pe.Found != tc.found || !slices.Equal(pe.Expected, tc.expected) {
				t.Fatalf("got Pos=%d Found=%q Expected=%q, want Pos=%d Found=%q Expected=%q (%v)",
					pe.Pos, pe.Found, pe.Expected, tc.pos, tc.found, tc.expected, err)
			}
			if tc.message == "" && pe.Message != "" || !strings.Contains(pe.Message, tc.message) {
				t.Fatalf("Message = %q, want it to contain %q", pe.Message, tc.message)
			}
		})
	}
}

func TestParseErrorString(t *testing.T) {
	tests := []struct {
		err  ParseError
		want string
	}{
		{ParseError{Found: "x", Expected: []string{"ON", "TO"}, Pos: 3}, `syntax error at or near "x": expected ON, TO`},
		{ParseError{Found: "end of input", Expected: []string{"identifier"}}, `syntax error at end of input: expected identifier`},
		{ParseError{Found: "SELECT", Message: `unknown privilege "SELECT"`}, `syntax error at or near "SELECT": unknown privilege "SELECT"`},
		{ParseError{Found: ".", Message: "m", Expected: []string{"a"}}, `syntax error at or near ".": m; expected a`},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseErrorFoundTruncated(t *testing.T) {
	long := strings.Repeat("é", 40)
	_, err := ParseStatement(`CREATE CATALOG c ` + long)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want *ParseError", err)
	}
	if !strings.HasSuffix(pe.Found, "...") || len(pe.Found) > maxFound+3 || !strings.HasPrefix(long, strings.TrimSuffix(pe.Found, "...")) {
		t.Fatalf("Found = %q, want a truncated prefix of the token", pe.Found)
	}
}

func TestQNameNames(t *testing.T) {
	tests := []struct {
		q    QName
		want []string
	}{
		{nil, []string{}},
		{qn(id("main"), qid("Sales"), id("x")), []string{"main", "Sales", "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.q.String(), func(t *testing.T) {
			if got := tc.q.Names(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Names() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestQuoteIdent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"main", "main"},
		{"my_github_mcp", "my_github_mcp"},
		{"_x1$", "_x1$"},
		{"café", "café"},
		{"status", "status"},
		{"catalog", "catalog"},
		{"if", "if"},
		{"Main", `"Main"`},
		{"data-analysts", `"data-analysts"`},
		{"a b", `"a b"`},
		{`a"b`, `"a""b"`},
		{"1abc", `"1abc"`},
		{"$x", `"$x"`},
		{"", `""`},
		{"on", `"on"`},
		{"to", `"to"`},
		{"all", `"all"`},
		{"null", `"null"`},
		{"\xff", "\xff"},
		{"€uro", "€uro"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := QuoteIdent(tc.in); got != tc.want {
				t.Fatalf("QuoteIdent(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestReservedRoundTrip checks that every keyword works as a name: bare
// when unreserved, quoted when reserved, and that String keeps it so.
func TestReservedRoundTrip(t *testing.T) {
	for tok := keywordBeg + 1; tok < keywordEnd; tok++ {
		word := strings.ToLower(tok.String())
		t.Run(word, func(t *testing.T) {
			for _, sql := range []string{
				"CREATE CATALOG " + QuoteIdent(word),
				"CREATE SCHEMA " + QuoteIdent(word) + "." + QuoteIdent(word) + " COMMENT 'x'",
				"DROP CONNECTION IF EXISTS " + QuoteIdent(word) + " CASCADE",
				"SHOW GRANTS " + QuoteIdent(word) + " ON CATALOG " + QuoteIdent(word),
				"GRANT BROWSE ON CATALOG " + QuoteIdent(word) + " TO " + QuoteIdent(word),
				"CREATE USER IF NOT EXISTS " + QuoteIdent(word) + " WITH PASSWORD 'x'",
				"ALTER GROUP " + QuoteIdent(word) + " ADD USER " + QuoteIdent(word),
				"CREATE CONNECTION " + QuoteIdent(word) + " TYPE " + strings.ToUpper(word) + " OPTIONS (" + QuoteIdent(word) + " 'v')",
			} {
				stmt, err := ParseStatement(sql)
				if err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				if got := stmt.String(); got != sql {
					t.Fatalf("String() = %q, want %q", got, sql)
				}
				checkRoundTrip(t, stmt)
			}
			_, err := ParseStatement("CREATE CATALOG " + word)
			if reserved := tok.IsReserved(); reserved != (err != nil) {
				t.Fatalf("bare %q as a name: err = %v, reserved = %v", word, err, reserved)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.sql)
	}
	for _, s := range []string{
		`GRANT USE FOO ON CATALOG c TO u`, `SHOW GRANTS`, `CREATE CATALOG "x`, `COMMENT ON CATALOG c IS E'\x41\101\u0041'`,
		`CREATE CONNECTION x TYPE "é" OPTIONS (` + "`K`" + ` = $$v$$)`, `DROP SCHEMA if.if`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmt, err := ParseStatement(sql)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError", err)
			}
			if pe.Pos < 0 || pe.Pos > len(sql) {
				t.Fatalf("error position %d outside the input (len %d)", pe.Pos, len(sql))
			}
			return
		}
		if !IsGovernance(sql) {
			t.Fatalf("ParseStatement accepts %q but IsGovernance is false", sql)
		}
		checkRoundTrip(t, stmt)
	})
}

// FuzzRoundTrip builds statements around arbitrary names and strings and
// checks that String prints SQL that parses back to the same AST; it
// exercises identifier and literal quoting far more than FuzzParse, whose
// mutations rarely stay valid.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range [][2]string{
		{"main", "it's"}, {"Data-Analysts", `a"b`}, {"on", "$$"}, {"if", "exists"}, {"café", "\x00\xff"},
		{"a$", "E'x'"}, {"`x`", "--"}, {"e", "/*"}, {"É", "\n"}, {"user", "null"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == "" || b == "" {
			return
		}
		// ident is the Ident parsing the printed name yields.
		ident := func(s string) Ident { return Ident{Name: s, Quoted: QuoteIdent(s) != s} }
		on := SecurableRef{Type: ObjConnection, Name: QName{ident(a), ident(b), {Name: a, Quoted: true}}}
		for _, stmt := range []Statement{
			&CreateCatalog{Name: ident(a), IfNotExists: true, Comment: &b},
			&CreateSchema{Name: QName{ident(a), {Name: b, Quoted: true}}, Comment: &a},
			&CreateConnection{Name: QName{ident(a), ident(b)}, Type: asciiUpper(a),
				Options: []Option{{Key: a, Value: b}, {Key: a + "x", Value: a}}, Comment: &b},
			&AlterConnectionOptions{Name: QName{ident(b)}, Options: []Option{{Key: b, Value: a}}},
			&Drop{Type: ObjSchema, Name: QName{ident(a), ident(b)}, IfExists: true, Cascade: true},
			&AlterOwner{Type: ObjCatalog, Name: QName{ident(a)}, Owner: ident(b)},
			&AlterRename{Type: ObjConnection, Name: QName{ident(a), ident(b)}, NewName: ident(a)},
			&CommentOn{Type: ObjSchema, Name: QName{ident(b)}, Comment: &a},
			&CreatePrincipal{Type: ObjUser, Name: ident(a), Password: &b},
			&AlterPassword{Type: ObjServicePrincipal, Name: ident(b), Password: &a},
			&AlterGroupMembers{Group: ident(a), MemberType: ObjGroup, Members: []Ident{ident(b), ident(a)}},
			&Grant{Privileges: privs(catalog.PrivUseConnection, catalog.PrivAll), On: on, To: []Ident{ident(a), ident(b)}},
			&Revoke{Privileges: privs(catalog.PrivBrowse), On: SecurableRef{Type: ObjMetastore}, From: []Ident{ident(b)}},
			&ShowGrants{Principal: &Ident{Name: a, Quoted: QuoteIdent(a) != a}, On: &on},
			&ShowGrants{To: &Ident{Name: b, Quoted: true}},
			&ShowObjects{What: "CONNECTIONS", In: QName{ident(a), ident(b)}},
			&Describe{Type: ObjServicePrincipal, Name: QName{ident(b)}},
		} {
			checkRoundTrip(t, stmt)
		}
	})
}
