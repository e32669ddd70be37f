package parser

import "strconv"

// Token is a lexical token of the governance grammar.
type Token int

const (
	// ILLEGAL is a character or construct the scanner cannot tokenize
	// (an unexpected character, an unterminated quote or comment, a bad
	// escape). Its literal is a description of the problem.
	ILLEGAL Token = iota
	// EOF is the end of the input.
	EOF

	// IDENT is an unquoted identifier that is not a keyword; its literal
	// is folded to lower case.
	IDENT
	// QIDENT is a "double quoted" or `backtick` identifier; its literal is
	// the unescaped name with its case preserved.
	QIDENT
	// STRING is a string literal ('x', E'x', $$x$$ or $tag$x$tag$); its
	// literal is the unescaped value.
	STRING
	// NUMBER is a numeric literal; its literal is the text as written.
	NUMBER

	LPAREN    // (
	RPAREN    // )
	COMMA     // ,
	DOT       // .
	SEMICOLON // ;
	EQ        // =

	keywordBeg
	// Keywords. The scanner returns them for unquoted words; the literal
	// is the lower-case word. Only the reserved ones (see reserved) cannot
	// be used as bare identifiers.
	ACCESS
	ADD
	ALL
	ALTER
	AND
	AS
	BUDGET
	BUDGETS
	CASCADE
	CATALOG
	CATALOGS
	COMMENT
	CONNECTION
	CONNECTIONS
	CREATE
	DESC
	DESCRIBE
	DROP
	EACH
	EXISTS
	EXPIRES
	EXPLAIN
	FOR
	FROM
	GRANT
	GRANTS
	GROUP
	GROUPS
	IF
	IN
	IS
	LIMIT
	LIMITS
	METASTORE
	MINUTE
	MODEL
	MONTH
	NOT
	NULL
	ON
	OPTIONS
	OWNER
	PASSWORD
	PER
	POLICIES
	POLICY
	PRINCIPAL
	PRINCIPALS
	PROVIDER
	RATE
	REMOVE
	RENAME
	REQUESTS
	RESTRICT
	REVISION
	REVOKE
	SCHEMA
	SCHEMAS
	SERVICE
	SERVICES
	SET
	SHOW
	STATUS
	TABLE
	TAG
	TO
	TOKEN
	TOKENS
	TYPE
	USD
	USER
	USERS
	VIA
	WHERE
	WITH
	keywordEnd
)

// tokenNames holds the display names of the non-keyword tokens.
var tokenNames = [...]string{
	ILLEGAL:   "ILLEGAL",
	EOF:       "end of input",
	IDENT:     "identifier",
	QIDENT:    "quoted identifier",
	STRING:    "string literal",
	NUMBER:    "number",
	LPAREN:    "(",
	RPAREN:    ")",
	COMMA:     ",",
	DOT:       ".",
	SEMICOLON: ";",
	EQ:        "=",
}

// keywordNames holds the upper-case spelling of every keyword token.
var keywordNames = [...]string{
	ACCESS:      "ACCESS",
	ADD:         "ADD",
	ALL:         "ALL",
	ALTER:       "ALTER",
	AND:         "AND",
	AS:          "AS",
	BUDGET:      "BUDGET",
	BUDGETS:     "BUDGETS",
	CASCADE:     "CASCADE",
	CATALOG:     "CATALOG",
	CATALOGS:    "CATALOGS",
	COMMENT:     "COMMENT",
	CONNECTION:  "CONNECTION",
	CONNECTIONS: "CONNECTIONS",
	CREATE:      "CREATE",
	DESC:        "DESC",
	DESCRIBE:    "DESCRIBE",
	DROP:        "DROP",
	EACH:        "EACH",
	EXISTS:      "EXISTS",
	EXPIRES:     "EXPIRES",
	EXPLAIN:     "EXPLAIN",
	FOR:         "FOR",
	FROM:        "FROM",
	GRANT:       "GRANT",
	GRANTS:      "GRANTS",
	GROUP:       "GROUP",
	GROUPS:      "GROUPS",
	IF:          "IF",
	IN:          "IN",
	IS:          "IS",
	LIMIT:       "LIMIT",
	LIMITS:      "LIMITS",
	METASTORE:   "METASTORE",
	MINUTE:      "MINUTE",
	MODEL:       "MODEL",
	MONTH:       "MONTH",
	NOT:         "NOT",
	NULL:        "NULL",
	ON:          "ON",
	OPTIONS:     "OPTIONS",
	OWNER:       "OWNER",
	PASSWORD:    "PASSWORD",
	PER:         "PER",
	POLICIES:    "POLICIES",
	POLICY:      "POLICY",
	PRINCIPAL:   "PRINCIPAL",
	PRINCIPALS:  "PRINCIPALS",
	PROVIDER:    "PROVIDER",
	RATE:        "RATE",
	REMOVE:      "REMOVE",
	RENAME:      "RENAME",
	REQUESTS:    "REQUESTS",
	RESTRICT:    "RESTRICT",
	REVISION:    "REVISION",
	REVOKE:      "REVOKE",
	SCHEMA:      "SCHEMA",
	SCHEMAS:     "SCHEMAS",
	SERVICE:     "SERVICE",
	SERVICES:    "SERVICES",
	SET:         "SET",
	SHOW:        "SHOW",
	STATUS:      "STATUS",
	TABLE:       "TABLE",
	TAG:         "TAG",
	TO:          "TO",
	TOKEN:       "TOKEN",
	TOKENS:      "TOKENS",
	TYPE:        "TYPE",
	USD:         "USD",
	USER:        "USER",
	USERS:       "USERS",
	VIA:         "VIA",
	WHERE:       "WHERE",
	WITH:        "WITH",
}

// String returns the display name of the token: the upper-case word for
// keywords, the punctuation itself, or a description ("identifier").
func (t Token) String() string {
	switch {
	case t > keywordBeg && t < keywordEnd:
		return keywordNames[t]
	case t >= 0 && int(t) < len(tokenNames):
		return tokenNames[t]
	}
	return "token(" + strconv.Itoa(int(t)) + ")"
}

// IsKeyword reports whether t is a keyword token.
func (t Token) IsKeyword() bool { return t > keywordBeg && t < keywordEnd }

// IsReserved reports whether t is a reserved keyword, i.e. one that must be
// quoted to be used as a name. The set follows PostgreSQL's reserved words
// where they occur in this grammar; ON and TO must be reserved because
// SHOW GRANTS [principal] ON ... has an optional name before them.
func (t Token) IsReserved() bool {
	switch t {
	case ALL, CREATE, DESC, FROM, GRANT, IN, IS, NOT, NULL, ON, TO, WITH:
		return true
	}
	return false
}

// isWord reports whether t is an unquoted word: an identifier or a keyword.
func (t Token) isWord() bool { return t == IDENT || t.IsKeyword() }

// Lookup returns the keyword token for an unquoted word, matched
// case-insensitively (ASCII only, as the scanner folds), or IDENT.
func Lookup(word string) Token {
	switch asciiLower(word) {
	case "access":
		return ACCESS
	case "add":
		return ADD
	case "all":
		return ALL
	case "alter":
		return ALTER
	case "and":
		return AND
	case "as":
		return AS
	case "budget":
		return BUDGET
	case "budgets":
		return BUDGETS
	case "cascade":
		return CASCADE
	case "catalog":
		return CATALOG
	case "catalogs":
		return CATALOGS
	case "comment":
		return COMMENT
	case "connection":
		return CONNECTION
	case "connections":
		return CONNECTIONS
	case "create":
		return CREATE
	case "desc":
		return DESC
	case "describe":
		return DESCRIBE
	case "drop":
		return DROP
	case "each":
		return EACH
	case "exists":
		return EXISTS
	case "expires":
		return EXPIRES
	case "explain":
		return EXPLAIN
	case "for":
		return FOR
	case "from":
		return FROM
	case "grant":
		return GRANT
	case "grants":
		return GRANTS
	case "group":
		return GROUP
	case "groups":
		return GROUPS
	case "if":
		return IF
	case "illegal":
		return ILLEGAL
	case "in":
		return IN
	case "is":
		return IS
	case "limit":
		return LIMIT
	case "limits":
		return LIMITS
	case "metastore":
		return METASTORE
	case "minute":
		return MINUTE
	case "model":
		return MODEL
	case "month":
		return MONTH
	case "not":
		return NOT
	case "null":
		return NULL
	case "on":
		return ON
	case "options":
		return OPTIONS
	case "owner":
		return OWNER
	case "password":
		return PASSWORD
	case "per":
		return PER
	case "policies":
		return POLICIES
	case "policy":
		return POLICY
	case "principal":
		return PRINCIPAL
	case "principals":
		return PRINCIPALS
	case "provider":
		return PROVIDER
	case "rate":
		return RATE
	case "remove":
		return REMOVE
	case "rename":
		return RENAME
	case "requests":
		return REQUESTS
	case "restrict":
		return RESTRICT
	case "revision":
		return REVISION
	case "revoke":
		return REVOKE
	case "schema":
		return SCHEMA
	case "schemas":
		return SCHEMAS
	case "service":
		return SERVICE
	case "services":
		return SERVICES
	case "set":
		return SET
	case "show":
		return SHOW
	case "status":
		return STATUS
	case "table":
		return TABLE
	case "tag":
		return TAG
	case "to":
		return TO
	case "token":
		return TOKEN
	case "tokens":
		return TOKENS
	case "type":
		return TYPE
	case "usd":
		return USD
	case "user":
		return USER
	case "users":
		return USERS
	case "via":
		return VIA
	case "where":
		return WHERE
	case "with":
		return WITH
	}
	return IDENT
}
