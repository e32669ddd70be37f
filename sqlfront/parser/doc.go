// Package parser is the hand-written parser of Mandate's governance
// statements: the SQL that administers principals, catalogs, schemas,
// connections and Unity-Catalog privileges. Everything else a client sends
// (SELECT, SET, BEGIN, ...) goes to the PostgreSQL grammar; IsGovernance
// tells the two apart by the leading keywords, and Split cuts a
// multi-statement query string into statements first.
//
// # Design
//
// The package follows the InfluxQL layout:
//
//   - token.go: Token, the keyword table and which keywords are reserved.
//   - scanner.go: Scanner turns text into (Token, offset, literal) triples.
//     Unquoted words (ASCII letters, digits, '_', '$' not first, and any
//     non-ASCII character, as in PostgreSQL's lexer) are folded to lower
//     case (ASCII only, like PostgreSQL in UTF-8) and looked up as
//     keywords; "double quoted" and `backtick` identifiers keep their
//     case (a doubled quote escapes it); strings are '...' (likewise),
//     E'...' (backslash escapes) and $tag$...$tag$; -- and nested /* */
//     comments are skipped. Problems (an unterminated
//     quote, a stray character) come back as ILLEGAL tokens whose literal
//     is the message; the scanner always makes progress.
//   - parser.go: a recursive-descent parser over the scanned tokens with
//     arbitrary lookahead. While it looks for optional tokens it records
//     what it would have accepted, so a *ParseError lists every
//     alternative at the byte offset of the offending token.
//   - ast.go: the statement nodes (the contract with the executor);
//     format.go: their String methods, which print canonical SQL that
//     parses back to an equal AST (quoted identifiers stay quoted,
//     privileges are printed with spaces: USE CONNECTION).
//   - redact.go: Redact masks secrets in statement text on the token
//     stream, so that it works on statements that do not parse too.
//   - split.go: Split and IsGovernance, built on the same scanner so that
//     quoting rules agree. Apart from backticks (quotes here, an operator
//     character to PostgreSQL) the scanner finds the same quoted strings,
//     identifiers and comments as PostgreSQL's lexer, so Split cuts where
//     the server would.
//
// Reserved keywords (ALL CREATE DESC FROM GRANT IN IS NOT NULL ON TO WITH)
// must be quoted to be used as names; every other keyword, and every other
// word, may be used bare (a connection called status, a catalog called
// catalog). IF is recognised as IF [NOT] EXISTS only when NOT or EXISTS
// follows. OPTIONS keys may be any word.
//
// # Grammar
//
// The statements ParseStatement accepts, in EBNF (quoted words are
// keywords or, where noted, plain words; [ ] optional, { } repeated,
// ( | ) one of):
//
//	stmt        = statement [ ";" ] .
//	statement   = create | drop | alter | comment | describe
//	            | grant | revoke | explain | show
//	            | accesstoken | budget | ratelimit | policy | tools .
//
// Securable objects and principals:
//
//	create      = "CREATE" "CATALOG" [ ifnotexists ] name1 [ "COMMENT" string ]
//	            | "CREATE" "SCHEMA" [ ifnotexists ] name2 [ "COMMENT" string ]
//	            | "CREATE" "CONNECTION" [ ifnotexists ] name3 "TYPE" word
//	                  [ "OPTIONS" options ] [ "COMMENT" string ]
//	            | "CREATE" servicetype [ ifnotexists ] name3 [ "OPTIONS" options ] [ "COMMENT" string ]
//	            | "CREATE" ( "USER" | "SERVICE" "PRINCIPAL" ) [ ifnotexists ] name1
//	                  [ [ "WITH" ] "PASSWORD" ( string | "NULL" ) ]
//	            | "CREATE" "GROUP" [ ifnotexists ] name1 .
//	drop        = "DROP" ( objtype | "ACCESS" "TOKEN" | "BUDGET" ) [ "IF" "EXISTS" ] name
//	                  [ "CASCADE" | "RESTRICT" ] .
//	alter       = "ALTER" container name [ "SET" ] "OWNER" "TO" name1
//	            | "ALTER" container name "RENAME" "TO" name1
//	            | "ALTER" ( "CONNECTION" | servicetype ) name3 [ "SET" ] "OPTIONS" options
//	            | "ALTER" ( "USER" | "SERVICE" "PRINCIPAL" ) name1
//	                  [ "WITH" ] "PASSWORD" ( string | "NULL" )
//	            | "ALTER" "GROUP" name1 ( "ADD" | "REMOVE" ) principaltype name1 { "," name1 } .
//	comment     = "COMMENT" "ON" container name "IS" ( string | "NULL" ) .
//	describe    = ( "DESCRIBE" | "DESC" ) objtype name .
//
// Privileges and their explanation:
//
//	grant       = "GRANT" privileges "ON" securable "TO" name1 { "," name1 } .
//	revoke      = "REVOKE" privileges "ON" securable "FROM" name1 { "," name1 } .
//	explain     = "EXPLAIN" "ACCESS" "FOR" name1 [ "VIA" name1 ] privilege "ON" securable .
//
// Listings:
//
//	show        = "SHOW" "GRANTS" [ name1 ] "ON" securable
//	            | "SHOW" "GRANTS" "TO" name1
//	            | "SHOW" ( "CATALOGS" | "USERS" | "GROUPS" | "SERVICE" "PRINCIPALS" )
//	            | "SHOW" "SCHEMAS" [ ( "IN" | "FROM" ) name1 ]
//	            | "SHOW" "CONNECTIONS" [ ( "IN" | "FROM" ) name2 ]
//	            | "SHOW" "MODEL" [ "PROVIDER" ] "SERVICES" [ ( "IN" | "FROM" ) name2 ]
//	            | "SHOW" "REVISION"
//	            | "SHOW" "CONNECTION" "STATUS" [ "FOR" name1 ]
//	            | "SHOW" "RATE" "LIMITS" [ "ON" limited name3 ]
//	            | "SHOW" "ACCESS" "TOKENS" [ "FOR" "USER" name1 ]
//	            | "SHOW" "BUDGETS"
//	            | "SHOW" "POLICIES" [ "ON" securable ]
//	            | "SHOW" "TOOLS" "ON" "CONNECTION" name3 .
//
// Access tokens, budgets and rate limits:
//
//	accesstoken = "CREATE" "ACCESS" "TOKEN" [ name1 ] [ "FOR" "USER" name1 ] [ "VIA" name1 ]
//	                  [ "EXPIRES" "IN" string ] [ "COMMENT" string ] .
//	budget      = "CREATE" "BUDGET" [ ifnotexists ] name1 "LIMIT" number "USD" "PER" "MONTH"
//	                  "FOR" ( "EACH" "USER" | principaltype name1 )
//	                  [ "ON" "MODEL" "SERVICE" name3 ] [ "WHERE" tag { "AND" tag } ] [ "COMMENT" string ] .
//	ratelimit   = "ALTER" limited name3 "SET" "RATE" "LIMIT" quantity [ "," quantity ] "PER" "MINUTE" [ target ]
//	            | "ALTER" limited name3 "DROP" "RATE" "LIMIT" [ "IF" "EXISTS" ] [ target ] .
//	quantity    = number ( "REQUESTS" | "TOKENS" ) .
//	target      = "FOR" ( "EACH" "USER" | principaltype name1 ) .
//	tag         = "TAG" ident "=" string .
//
// A rate limit names each of REQUESTS and TOKENS at most once (a
// connection is limited in requests only: the catalog refuses TOKENS).
// A CREATE ACCESS TOKEN without a name gets a generated one; without FOR
// USER the token is the caller's.
//
// Guardrails (policies) and tool pinning:
//
//	policy      = "CREATE" "POLICY" name1 "ON" policyon [ "FOR" phases ]
//	                  ( "AS" string | "USING" name3 [ "OPTIONS" options ] )
//	            | "ALTER" "POLICY" name1 "SET" "MODE" ( "ENFORCE" | "MONITOR" )
//	            | "DROP" "POLICY" [ "IF" "EXISTS" ] name1 .
//	policyon    = "CATALOG" name1 | "SCHEMA" name2 | "CONNECTION" name3 | "MODEL" "SERVICE" name3 .
//	phases      = "CALL" [ "AND" "RESULT" ] | "RESULT" [ "AND" "CALL" ] .
//	tools       = "ALTER" "CONNECTION" name3 "APPROVE" "TOOLS" [ tool { "," tool } ] .
//	tool        = ident | string .
//
// AS takes a Rego policy's source; USING a built-in guardrail function
// (system.ai.block_prompt_injection, detect_sensitive_data, ...) with its
// OPTIONS. CALL, RESULT, AND, USING, MODE, ENFORCE, MONITOR, APPROVE and
// TOOLS are matched as words, not keywords: they remain usable as names.
//
// Shared productions:
//
//	ifnotexists = "IF" "NOT" "EXISTS" .
//	container   = "CATALOG" | "SCHEMA" | "CONNECTION" | servicetype .
//	servicetype = "MODEL" "SERVICE" | "MODEL" "PROVIDER" "SERVICE" .
//	limited     = "MODEL" "SERVICE" | "CONNECTION" .
//	principaltype = "USER" | "GROUP" | "SERVICE" "PRINCIPAL" .
//	objtype     = container | principaltype .
//	securable   = "METASTORE" | "CATALOG" name1 | "SCHEMA" name2 | "CONNECTION" name3 | servicetype name3
//	            | "TABLE" name3 .
//	privileges  = privilege { "," privilege } .
//	privilege   = word { word } .  (USE CONNECTION, USE_CONNECTION, ALL [PRIVILEGES], ...)
//	options     = "(" word [ "=" ] string { "," word [ "=" ] string } ")" .
//	name        = ident { "." ident } .  (at most 1, 2 or 3 parts: catalog, schema, connection)
//	name1       = ident .  name2 = ident [ "." ident ] .  name3 = ident [ "." ident [ "." ident ] ] .
//	ident       = identifier | quoted-identifier | unreserved-keyword .
//
// The number of parts a name may have follows the object type: one for
// catalogs and principals, up to two for schemas (catalog.schema), up to
// three for connections and services (catalog.schema.connection). A
// privilege is the run of words up to "," or ON, resolved by
// catalog.ParsePrivilege; EXPLAIN ACCESS takes exactly one.
//
// Transaction statements (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK,
// SAVEPOINT, RELEASE, ROLLBACK TO) are PostgreSQL's: they are not in this
// grammar (IsGovernance is false for them) and the PostgreSQL grammar
// parses them; the SQL front end makes the governance statements between
// BEGIN and COMMIT take effect together.
package parser
