package parser

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// ParseError is a syntax error. Pos is the 0-based byte offset in the
// parsed text of the token the error is reported at.
type ParseError struct {
	// Message describes the problem when it is more than an unexpected
	// token (an unknown privilege, an unterminated string, ...).
	Message string
	// Found is the offending token as written, or "end of input".
	Found string
	// Expected lists what would have been accepted at Pos: upper-case
	// keywords, quoted punctuation ("(") and descriptions ("identifier").
	Expected []string
	Pos      int
}

// foundEOF is ParseError.Found at the end of the input.
const foundEOF = "end of input"

// Error formats the error like
// `syntax error at or near "X": expected ON, TO`.
func (e *ParseError) Error() string {
	var b strings.Builder
	if e.Found == foundEOF {
		b.WriteString("syntax error at end of input")
	} else {
		fmt.Fprintf(&b, "syntax error at or near %q", e.Found)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Expected) > 0 {
		if e.Message != "" {
			b.WriteString("; expected ")
		} else {
			b.WriteString(": expected ")
		}
		b.WriteString(strings.Join(e.Expected, ", "))
	}
	return b.String()
}

// maxFound bounds the length of ParseError.Found.
const maxFound = 40

// token is one scanned token.
type token struct {
	tok Token
	pos int
	end int
	lit string
}

// parser is a recursive-descent parser over the tokens of one statement,
// scanned on demand into toks so that it can look ahead any distance.
// expect collects what the parser looked for and did not find at the
// current token, so that errors can list every alternative.
type parser struct {
	src    string
	s      Scanner
	toks   []token // scanned so far; once EOF is scanned it is the last
	i      int     // index of the current token
	expect []string

	// The first tokens and expectations live in the parser itself: a
	// GRANT or REVOKE fits them without growing either slice.
	toksBuf   [16]token
	expectBuf [8]string
}

// newParser returns a parser of sql.
func newParser(sql string) *parser {
	p := &parser{src: sql, s: Scanner{src: sql}}
	p.toks, p.expect = p.toksBuf[:0], p.expectBuf[:0]
	return p
}

// ParseStatement parses exactly one governance statement, optionally
// followed by a semicolon. Errors are *ParseError.
func ParseStatement(sql string) (Statement, error) {
	p := newParser(sql)
	stmt, err := p.parseStatement()
	if err != nil {
		return nil, err
	}
	p.accept(SEMICOLON)
	if !p.at(EOF) {
		return nil, p.fail()
	}
	return stmt, nil
}

// tokAt returns token i, scanning as needed (EOF past the end).
func (p *parser) tokAt(i int) token {
	for len(p.toks) <= i {
		if n := len(p.toks); n > 0 && p.toks[n-1].tok == EOF {
			return p.toks[n-1]
		}
		tok, pos, lit := p.s.Scan()
		p.toks = append(p.toks, token{tok: tok, pos: pos, end: p.s.End(), lit: lit})
	}
	return p.toks[i]
}

// cur returns the current token.
func (p *parser) cur() token { return p.tokAt(p.i) }

// peek returns the kind of the token n places after the current one.
func (p *parser) peek(n int) Token { return p.tokAt(p.i + n).tok }

func (p *parser) next() {
	if p.cur().tok != EOF {
		p.i++
	}
	p.expect = p.expect[:0]
}

// want records that s would have been accepted at the current token.
func (p *parser) want(s ...string) {
	for _, x := range s {
		dup := false
		for _, y := range p.expect {
			if x == y {
				dup = true
				break
			}
		}
		if !dup {
			p.expect = append(p.expect, x)
		}
	}
}

// expectName returns the Expected entry for t.
func expectName(t Token) string {
	switch t {
	case LPAREN, RPAREN, COMMA, DOT, SEMICOLON, EQ:
		return quotedPunct[t-LPAREN]
	}
	return t.String()
}

// quotedPunct holds expectName of the punctuation tokens, LPAREN to EQ.
var quotedPunct = func() (q [EQ - LPAREN + 1]string) {
	for t := LPAREN; t <= EQ; t++ {
		q[t-LPAREN] = `"` + t.String() + `"`
	}
	return q
}()

// at reports whether the current token is t, recording t as expected when
// it is not.
func (p *parser) at(t Token) bool {
	if p.cur().tok == t {
		return true
	}
	p.want(expectName(t))
	return false
}

// accept consumes the current token when it is t.
func (p *parser) accept(t Token) bool {
	if p.at(t) {
		p.next()
		return true
	}
	return false
}

// need consumes the current token when it is t and fails otherwise.
func (p *parser) need(t Token) error {
	if p.accept(t) {
		return nil
	}
	return p.fail()
}

// found returns the current token as written, for errors.
func (p *parser) found(t token) string {
	if t.tok == EOF {
		return foundEOF
	}
	return p.text(t.pos, t.end)
}

func (p *parser) text(pos, end int) string {
	s := p.src[pos:end]
	if len(s) > maxFound {
		n := maxFound
		for n > 0 && !isRuneStart(s[n]) {
			n--
		}
		s = s[:n] + "..."
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// fail returns the error for an unexpected current token.
func (p *parser) fail() error {
	t := p.cur()
	if t.tok == ILLEGAL {
		return &ParseError{Message: t.lit, Found: p.found(t), Pos: t.pos}
	}
	return &ParseError{Found: p.found(t), Expected: append([]string(nil), p.expect...), Pos: t.pos}
}

// failf returns an error with a message at token t.
func (p *parser) failf(t token, format string, args ...any) error {
	return &ParseError{Message: fmt.Sprintf(format, args...), Found: p.found(t), Pos: t.pos}
}

func (p *parser) parseStatement() (Statement, error) {
	switch p.cur().tok {
	case CREATE:
		p.next()
		return p.parseCreate()
	case DROP:
		p.next()
		return p.parseDrop()
	case ALTER:
		p.next()
		return p.parseAlter()
	case COMMENT:
		p.next()
		return p.parseCommentOn()
	case GRANT:
		p.next()
		return p.parseGrant()
	case REVOKE:
		p.next()
		return p.parseRevoke()
	case SHOW:
		p.next()
		return p.parseShow()
	case DESCRIBE, DESC:
		p.next()
		return p.parseDescribe()
	case EXPLAIN:
		p.next()
		return p.parseExplainAccess()
	}
	p.want("CREATE", "DROP", "ALTER", "COMMENT", "GRANT", "REVOKE", "SHOW", "DESCRIBE", "EXPLAIN")
	return nil, p.fail()
}

// Object type groups accepted after the statement keywords.
var (
	containerTypes = []ObjectType{ObjCatalog, ObjSchema, ObjConnection, ObjModelService, ObjProviderService}
	principalTypes = []ObjectType{ObjUser, ObjGroup, ObjServicePrincipal}
	allObjectTypes = []ObjectType{ObjCatalog, ObjSchema, ObjConnection, ObjModelService, ObjProviderService, ObjUser, ObjGroup, ObjServicePrincipal}
	dropTypes      = append(append([]ObjectType(nil), allObjectTypes...), ObjAccessToken, ObjBudget)
	securableTypes = []ObjectType{ObjMetastore, ObjCatalog, ObjSchema, ObjConnection, ObjModelService, ObjProviderService, ObjTable}
	limitedTypes   = []ObjectType{ObjModelService, ObjConnection}
)

// objectToken maps an object type to its (first) keyword.
func objectToken(t ObjectType) Token {
	switch t {
	case ObjCatalog:
		return CATALOG
	case ObjSchema:
		return SCHEMA
	case ObjConnection:
		return CONNECTION
	case ObjUser:
		return USER
	case ObjGroup:
		return GROUP
	case ObjServicePrincipal:
		return SERVICE
	case ObjMetastore:
		return METASTORE
	case ObjTable:
		return TABLE
	case ObjModelService, ObjProviderService:
		return MODEL
	case ObjAccessToken:
		return ACCESS
	case ObjBudget:
		return BUDGET
	}
	return ILLEGAL
}

// maxParts is the number of name parts an object of type t may have.
func maxParts(t ObjectType) int {
	switch t {
	case ObjSchema:
		return 2
	case ObjConnection, ObjTable, ObjModelService, ObjProviderService:
		return 3
	case ObjMetastore:
		return 0
	}
	return 1
}

// parseObjectType consumes one of the given object types.
func (p *parser) parseObjectType(types []ObjectType) (ObjectType, error) {
	for _, t := range types {
		if p.cur().tok != objectToken(t) {
			continue
		}
		switch t {
		case ObjModelService, ObjProviderService:
			// MODEL [PROVIDER] SERVICE: both start with MODEL.
			p.next()
			got := ObjModelService
			if p.accept(PROVIDER) {
				got = ObjProviderService
			}
			if err := p.need(SERVICE); err != nil {
				return "", err
			}
			if !hasType(types, got) {
				return "", p.failf(p.toks[p.i-1], "%s is not valid here", got)
			}
			return got, nil
		}
		p.next()
		var second Token
		switch t {
		case ObjServicePrincipal:
			second = PRINCIPAL
		case ObjAccessToken:
			second = TOKEN
		}
		if second != 0 {
			if err := p.need(second); err != nil {
				return "", err
			}
		}
		return t, nil
	}
	for _, t := range types {
		p.want(string(t))
	}
	return "", p.fail()
}

func hasType(types []ObjectType, t ObjectType) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// atIdent reports whether the current token can be a name: an identifier,
// a quoted identifier or an unreserved keyword.
func (p *parser) atIdent() bool {
	t := p.cur().tok
	if t == IDENT || t == QIDENT || (t.IsKeyword() && !t.IsReserved()) {
		return true
	}
	p.want("identifier")
	return false
}

func (p *parser) parseIdent() (Ident, error) {
	if !p.atIdent() {
		return Ident{}, p.fail()
	}
	t := p.cur()
	p.next()
	return Ident{Name: t.lit, Quoted: t.tok == QIDENT}, nil
}

// parseQName parses a dotted name of 1..max parts.
func (p *parser) parseQName(max int) (QName, error) {
	id, err := p.parseIdent()
	if err != nil {
		return nil, err
	}
	q := QName{id}
	for {
		if len(q) == max {
			if t := p.cur(); t.tok == DOT {
				return nil, p.failf(t, "improper qualified name (at most %d dotted parts)", max)
			}
			return q, nil
		}
		if !p.accept(DOT) {
			return q, nil
		}
		id, err := p.parseIdent()
		if err != nil {
			return nil, err
		}
		q = append(q, id)
	}
}

// parseName parses a one-part name.
func (p *parser) parseName() (Ident, error) {
	q, err := p.parseQName(1)
	if err != nil {
		return Ident{}, err
	}
	return q[0], nil
}

// parseIfNotExists consumes IF NOT EXISTS. IF is not reserved, so it is
// only taken as the start of the clause when NOT follows.
func (p *parser) parseIfNotExists() (bool, error) {
	if p.cur().tok != IF || p.peek(1) != NOT {
		p.want("IF")
		return false, nil
	}
	p.next()
	p.next()
	return true, p.need(EXISTS)
}

// parseIfExists consumes IF EXISTS (IF followed by EXISTS).
func (p *parser) parseIfExists() bool {
	if p.cur().tok != IF || p.peek(1) != EXISTS {
		p.want("IF")
		return false
	}
	p.next()
	p.next()
	return true
}

// parseString consumes a string literal.
func (p *parser) parseString() (string, error) {
	if !p.at(STRING) {
		return "", p.fail()
	}
	s := p.cur().lit
	p.next()
	return s, nil
}

// parseStringOrNull consumes a string literal or NULL (nil).
func (p *parser) parseStringOrNull() (*string, error) {
	if p.accept(NULL) {
		return nil, nil
	}
	s, err := p.parseString()
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// parseOptComment consumes an optional COMMENT 'text'.
func (p *parser) parseOptComment() (*string, error) {
	if !p.accept(COMMENT) {
		return nil, nil
	}
	s, err := p.parseString()
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// parseOptions parses (key 'value', ...) after OPTIONS. Keys may be any
// word, including reserved keywords, or quoted identifiers; an optional
// "=" may separate key and value.
func (p *parser) parseOptions() ([]Option, error) {
	if err := p.need(LPAREN); err != nil {
		return nil, err
	}
	var opts []Option
	for {
		t := p.cur()
		if !t.tok.isWord() && t.tok != QIDENT {
			p.want("option name")
			return nil, p.fail()
		}
		p.next()
		for _, o := range opts {
			if o.Key == t.lit {
				return nil, p.failf(t, "option %q specified more than once", t.lit)
			}
		}
		p.accept(EQ)
		v, err := p.parseString()
		if err != nil {
			return nil, err
		}
		opts = append(opts, Option{Key: t.lit, Value: v})
		if !p.accept(COMMA) {
			break
		}
	}
	if err := p.need(RPAREN); err != nil {
		return nil, err
	}
	return opts, nil
}

func (p *parser) parseCreate() (Statement, error) {
	if p.accept(POLICY) {
		return p.parseCreatePolicy()
	}
	if p.cur().tok == ACCESS && p.peek(1) == TOKEN {
		p.next()
		p.next()
		return p.parseCreateAccessToken()
	}
	if p.accept(BUDGET) {
		return p.parseCreateBudget()
	}
	p.want("POLICY", "ACCESS TOKEN", "BUDGET")
	typ, err := p.parseObjectType(allObjectTypes)
	if err != nil {
		return nil, err
	}
	ifNotExists, err := p.parseIfNotExists()
	if err != nil {
		return nil, err
	}
	switch typ {
	case ObjCatalog:
		name, err := p.parseName()
		if err != nil {
			return nil, err
		}
		c, err := p.parseOptComment()
		if err != nil {
			return nil, err
		}
		return &CreateCatalog{Name: name, IfNotExists: ifNotExists, Comment: c}, nil
	case ObjSchema:
		name, err := p.parseQName(2)
		if err != nil {
			return nil, err
		}
		c, err := p.parseOptComment()
		if err != nil {
			return nil, err
		}
		return &CreateSchema{Name: name, IfNotExists: ifNotExists, Comment: c}, nil
	case ObjConnection:
		return p.parseCreateConnection(ifNotExists)
	case ObjModelService, ObjProviderService:
		name, err := p.parseQName(3)
		if err != nil {
			return nil, err
		}
		s := &CreateService{Type: typ, Name: name, IfNotExists: ifNotExists}
		if p.accept(OPTIONS) {
			if s.Options, err = p.parseOptions(); err != nil {
				return nil, err
			}
		}
		if s.Comment, err = p.parseOptComment(); err != nil {
			return nil, err
		}
		return s, nil
	}
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	s := &CreatePrincipal{Type: typ, Name: name, IfNotExists: ifNotExists}
	if t := p.cur(); typ == ObjGroup && (t.tok == WITH || t.tok == PASSWORD) {
		return nil, p.failf(t, "a GROUP cannot have a password")
	}
	withPassword := p.accept(WITH)
	if withPassword || p.at(PASSWORD) {
		if err := p.need(PASSWORD); err != nil {
			return nil, err
		}
		if s.Password, err = p.parseStringOrNull(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (p *parser) parseCreateConnection(ifNotExists bool) (Statement, error) {
	name, err := p.parseQName(3)
	if err != nil {
		return nil, err
	}
	s := &CreateConnection{Name: name, IfNotExists: ifNotExists}
	if err := p.need(TYPE); err != nil {
		return nil, err
	}
	t := p.cur()
	if !t.tok.isWord() && t.tok != QIDENT {
		p.want("connection type")
		return nil, p.fail()
	}
	p.next()
	s.Type = asciiUpper(t.lit)
	if p.accept(OPTIONS) {
		if s.Options, err = p.parseOptions(); err != nil {
			return nil, err
		}
	}
	if s.Comment, err = p.parseOptComment(); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) parseDrop() (Statement, error) {
	if p.accept(POLICY) {
		s := &Drop{Type: ObjPolicy, IfExists: p.parseIfExists()}
		name, err := p.parseName()
		if err != nil {
			return nil, err
		}
		s.Name = QName{name}
		return s, nil
	}
	typ, err := p.parseObjectType(dropTypes)
	if err != nil {
		return nil, err
	}
	s := &Drop{Type: typ, IfExists: p.parseIfExists()}
	if s.Name, err = p.parseQName(maxParts(typ)); err != nil {
		return nil, err
	}
	if !p.accept(CASCADE) {
		p.accept(RESTRICT)
	} else {
		s.Cascade = true
	}
	return s, nil
}

func (p *parser) parseAlter() (Statement, error) {
	if p.accept(POLICY) {
		return p.parseAlterPolicy()
	}
	typ, err := p.parseObjectType(allObjectTypes)
	if err != nil {
		return nil, err
	}
	switch typ {
	case ObjUser, ObjServicePrincipal:
		name, err := p.parseName()
		if err != nil {
			return nil, err
		}
		p.accept(WITH)
		if err := p.need(PASSWORD); err != nil {
			return nil, err
		}
		pw, err := p.parseStringOrNull()
		if err != nil {
			return nil, err
		}
		return &AlterPassword{Type: typ, Name: name, Password: pw}, nil
	case ObjGroup:
		return p.parseAlterGroup()
	}
	name, err := p.parseQName(maxParts(typ))
	if err != nil {
		return nil, err
	}
	set := p.accept(SET)
	if typ == ObjConnection && !set && p.atWord("approve") {
		return p.parseApproveTools(name)
	}
	if typ == ObjConnection && p.accept(OPTIONS) {
		opts, err := p.parseOptions()
		if err != nil {
			return nil, err
		}
		return &AlterConnectionOptions{Name: name, Options: opts}, nil
	}
	if (typ == ObjModelService || typ == ObjProviderService) && p.accept(OPTIONS) {
		opts, err := p.parseOptions()
		if err != nil {
			return nil, err
		}
		return &AlterServiceOptions{Type: typ, Name: name, Options: opts}, nil
	}
	if hasType(limitedTypes, typ) {
		on := SecurableRef{Type: typ, Name: name}
		if set && p.accept(RATE) {
			return p.parseSetRateLimit(on)
		}
		if !set && p.accept(DROP) {
			if err := p.need(RATE); err != nil {
				return nil, err
			}
			if err := p.need(LIMIT); err != nil {
				return nil, err
			}
			d := &DropRateLimit{On: on, IfExists: p.parseIfExists()}
			var err error
			d.For, err = p.parseLimitTarget(false)
			return d, err
		}
	}
	if p.accept(OWNER) {
		if err := p.need(TO); err != nil {
			return nil, err
		}
		owner, err := p.parseName()
		if err != nil {
			return nil, err
		}
		return &AlterOwner{Type: typ, Name: name, Owner: owner}, nil
	}
	if !set && p.accept(RENAME) {
		if err := p.need(TO); err != nil {
			return nil, err
		}
		nn, err := p.parseName()
		if err != nil {
			return nil, err
		}
		return &AlterRename{Type: typ, Name: name, NewName: nn}, nil
	}
	return nil, p.fail()
}

func (p *parser) parseAlterGroup() (Statement, error) {
	g, err := p.parseName()
	if err != nil {
		return nil, err
	}
	s := &AlterGroupMembers{Group: g}
	switch {
	case p.accept(ADD):
		s.Add = true
	case p.accept(REMOVE):
	default:
		return nil, p.fail()
	}
	if s.MemberType, err = p.parseObjectType(principalTypes); err != nil {
		return nil, err
	}
	if s.Members, err = p.parseIdentList(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseIdentList parses name [, name ...].
func (p *parser) parseIdentList() ([]Ident, error) {
	var list []Ident
	for {
		id, err := p.parseName()
		if err != nil {
			return nil, err
		}
		list = append(list, id)
		if !p.accept(COMMA) {
			return list, nil
		}
	}
}

func (p *parser) parseCommentOn() (Statement, error) {
	if err := p.need(ON); err != nil {
		return nil, err
	}
	typ, err := p.parseObjectType(containerTypes)
	if err != nil {
		return nil, err
	}
	s := &CommentOn{Type: typ}
	if s.Name, err = p.parseQName(maxParts(typ)); err != nil {
		return nil, err
	}
	if err := p.need(IS); err != nil {
		return nil, err
	}
	if s.Comment, err = p.parseStringOrNull(); err != nil {
		return nil, err
	}
	return s, nil
}

// atPrivilegeWord reports whether the current token can be part of a
// privilege name: any word except the reserved keywords (but ALL and
// CREATE, which start privileges).
func (p *parser) atPrivilegeWord() bool {
	t := p.cur().tok
	return t.isWord() && (!t.IsReserved() || t == ALL || t == CREATE)
}

// parsePrivileges parses priv [, priv ...] where each privilege is one or
// more words (USE CONNECTION, USE_CONNECTION, ALL PRIVILEGES, ...).
func (p *parser) parsePrivileges() ([]catalog.Privilege, error) {
	var privs []catalog.Privilege
	for {
		if !p.atPrivilegeWord() {
			p.want("privilege")
			return nil, p.fail()
		}
		first := p.cur()
		var words []string
		last := first
		for p.atPrivilegeWord() {
			last = p.cur()
			words = append(words, last.lit)
			p.next()
		}
		if t := p.cur().tok; t != COMMA && t != ON {
			p.want(expectName(COMMA), "ON")
			return nil, p.fail()
		}
		priv, err := catalog.ParsePrivilege(strings.Join(words, " "))
		if err != nil {
			return nil, &ParseError{
				Message: fmt.Sprintf("unknown privilege %q", strings.ToUpper(strings.Join(words, " "))),
				Found:   p.text(first.pos, last.end),
				Pos:     first.pos,
			}
		}
		privs = append(privs, priv)
		if !p.accept(COMMA) {
			return privs, nil
		}
	}
}

// parseSecurable parses METASTORE | CATALOG c | SCHEMA [c.]s | CONNECTION [[c.]s.]x | TABLE [c.]s.t.
func (p *parser) parseSecurable() (SecurableRef, error) {
	typ, err := p.parseObjectType(securableTypes)
	if err != nil {
		return SecurableRef{}, err
	}
	ref := SecurableRef{Type: typ}
	if typ != ObjMetastore {
		if ref.Name, err = p.parseQName(maxParts(typ)); err != nil {
			return SecurableRef{}, err
		}
	}
	return ref, nil
}

// parseGrantBody parses privileges ON securable <kw> principals.
func (p *parser) parseGrantBody(kw Token) ([]catalog.Privilege, SecurableRef, []Ident, error) {
	privs, err := p.parsePrivileges()
	if err != nil {
		return nil, SecurableRef{}, nil, err
	}
	if err := p.need(ON); err != nil {
		return nil, SecurableRef{}, nil, err
	}
	on, err := p.parseSecurable()
	if err != nil {
		return nil, SecurableRef{}, nil, err
	}
	if err := p.need(kw); err != nil {
		return nil, SecurableRef{}, nil, err
	}
	who, err := p.parseIdentList()
	if err != nil {
		return nil, SecurableRef{}, nil, err
	}
	return privs, on, who, nil
}

func (p *parser) parseGrant() (Statement, error) {
	privs, on, to, err := p.parseGrantBody(TO)
	if err != nil {
		return nil, err
	}
	return &Grant{Privileges: privs, On: on, To: to}, nil
}

func (p *parser) parseRevoke() (Statement, error) {
	privs, on, from, err := p.parseGrantBody(FROM)
	if err != nil {
		return nil, err
	}
	return &Revoke{Privileges: privs, On: on, From: from}, nil
}

func (p *parser) parseShow() (Statement, error) {
	switch p.cur().tok {
	case GRANTS:
		p.next()
		return p.parseShowGrants()
	case CATALOGS, USERS, GROUPS:
		what := p.cur().tok.String()
		p.next()
		return &ShowObjects{What: what}, nil
	case SCHEMAS, CONNECTIONS:
		t := p.cur().tok
		p.next()
		s := &ShowObjects{What: t.String()}
		if p.accept(IN) || p.accept(FROM) {
			max := 1
			if t == CONNECTIONS {
				max = 2
			}
			var err error
			if s.In, err = p.parseQName(max); err != nil {
				return nil, err
			}
		}
		return s, nil
	case SERVICE:
		p.next()
		if err := p.need(PRINCIPALS); err != nil {
			return nil, err
		}
		return &ShowObjects{What: "SERVICE PRINCIPALS"}, nil
	case REVISION:
		p.next()
		return &ShowRevision{}, nil
	case CONNECTION:
		p.next()
		if err := p.need(STATUS); err != nil {
			return nil, err
		}
		sc := &ShowConnectionStatus{}
		if p.accept(FOR) {
			u, err := p.parseName()
			if err != nil {
				return nil, err
			}
			sc.For = &u
		}
		return sc, nil
	case MODEL:
		p.next()
		what := "MODEL SERVICES"
		if p.accept(PROVIDER) {
			what = "MODEL PROVIDER SERVICES"
		}
		if err := p.need(SERVICES); err != nil {
			return nil, err
		}
		s := &ShowObjects{What: what}
		if p.accept(IN) || p.accept(FROM) {
			var err error
			if s.In, err = p.parseQName(2); err != nil {
				return nil, err
			}
		}
		return s, nil
	case RATE:
		p.next()
		if err := p.need(LIMITS); err != nil {
			return nil, err
		}
		sr := &ShowRateLimits{}
		if p.accept(ON) {
			typ, err := p.parseObjectType(limitedTypes)
			if err != nil {
				return nil, err
			}
			on := SecurableRef{Type: typ}
			if on.Name, err = p.parseQName(3); err != nil {
				return nil, err
			}
			sr.On = &on
		}
		return sr, nil
	case ACCESS:
		p.next()
		if err := p.need(TOKENS); err != nil {
			return nil, err
		}
		st := &ShowAccessTokens{}
		if p.accept(FOR) {
			if err := p.need(USER); err != nil {
				return nil, err
			}
			u, err := p.parseName()
			if err != nil {
				return nil, err
			}
			st.For = &u
		}
		return st, nil
	case BUDGETS:
		p.next()
		return &ShowBudgets{}, nil
	case POLICIES:
		p.next()
		sp := &ShowPolicies{}
		if p.accept(ON) {
			on, err := p.parseSecurable()
			if err != nil {
				return nil, err
			}
			sp.On = &on
		}
		return sp, nil
	}
	if t := p.cur(); t.tok.isWord() && t.lit == "tools" {
		return p.parseShowTools()
	}
	p.want("GRANTS", "CATALOGS", "SCHEMAS", "CONNECTIONS", "USERS", "GROUPS", "SERVICE PRINCIPALS", "REVISION", "POLICIES", "CONNECTION STATUS",
		"MODEL SERVICES", "MODEL PROVIDER SERVICES", "RATE LIMITS", "ACCESS TOKENS", "BUDGETS", "TOOLS")
	return nil, p.fail()
}

// parseCreatePolicy parses what follows CREATE POLICY:
// name ON {CATALOG|SCHEMA|CONNECTION} x AS 'source' | $$source$$.
func (p *parser) parseCreatePolicy() (Statement, error) {
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	if err := p.need(ON); err != nil {
		return nil, err
	}
	on, err := p.parseSecurable()
	if err != nil {
		return nil, err
	}
	if on.Type == ObjMetastore || on.Type == ObjTable || on.Type == ObjProviderService {
		return nil, p.failf(p.cur(), "policies attach to a catalog, a schema, a connection or a model service")
	}
	return p.parsePolicyBody(&CreatePolicy{Name: name, On: on})
}

// parseExplainAccess parses what follows EXPLAIN:
// ACCESS FOR subject [VIA actor] privilege ON securable.
func (p *parser) parseExplainAccess() (Statement, error) {
	if err := p.need(ACCESS); err != nil {
		return nil, err
	}
	if err := p.need(FOR); err != nil {
		return nil, err
	}
	subject, err := p.parseName()
	if err != nil {
		return nil, err
	}
	e := &ExplainAccess{Subject: subject}
	if p.accept(VIA) {
		actor, err := p.parseName()
		if err != nil {
			return nil, err
		}
		e.Actor = &actor
	}
	start := p.cur()
	privs, err := p.parsePrivileges()
	if err != nil {
		return nil, err
	}
	if len(privs) != 1 {
		return nil, p.failf(start, "EXPLAIN ACCESS takes exactly one privilege")
	}
	e.Privilege = privs[0]
	if err := p.need(ON); err != nil {
		return nil, err
	}
	if e.On, err = p.parseSecurable(); err != nil {
		return nil, err
	}
	return e, nil
}

func (p *parser) parseShowGrants() (Statement, error) {
	if p.accept(TO) {
		to, err := p.parseName()
		if err != nil {
			return nil, err
		}
		return &ShowGrants{To: &to}, nil
	}
	s := &ShowGrants{}
	if !p.at(ON) {
		if !p.atIdent() {
			return nil, p.fail()
		}
		who, err := p.parseName()
		if err != nil {
			return nil, err
		}
		s.Principal = &who
	}
	if err := p.need(ON); err != nil {
		return nil, err
	}
	on, err := p.parseSecurable()
	if err != nil {
		return nil, err
	}
	s.On = &on
	return s, nil
}

func (p *parser) parseDescribe() (Statement, error) {
	typ, err := p.parseObjectType(allObjectTypes)
	if err != nil {
		return nil, err
	}
	s := &Describe{Type: typ}
	if s.Name, err = p.parseQName(maxParts(typ)); err != nil {
		return nil, err
	}
	return s, nil
}

// parseLimitTarget parses an optional FOR clause of a rate limit (or, with
// required, of a budget): FOR EACH USER | FOR USER name | FOR SERVICE
// PRINCIPAL name | FOR GROUP name.
func (p *parser) parseLimitTarget(required bool) (LimitTarget, error) {
	if !p.accept(FOR) {
		if required {
			return LimitTarget{}, p.fail()
		}
		return LimitTarget{Level: catalog.LevelService}, nil
	}
	if p.cur().tok == EACH {
		p.next()
		if err := p.need(USER); err != nil {
			return LimitTarget{}, err
		}
		return LimitTarget{Level: catalog.LevelEachUser}, nil
	}
	p.want("EACH USER")
	typ, err := p.parseObjectType(principalTypes)
	if err != nil {
		return LimitTarget{}, err
	}
	name, err := p.parseName()
	if err != nil {
		return LimitTarget{}, err
	}
	level := map[ObjectType]catalog.LimitLevel{ObjUser: catalog.LevelUser, ObjServicePrincipal: catalog.LevelServicePrincipal,
		ObjGroup: catalog.LevelGroup}[typ]
	return LimitTarget{Level: level, Principal: &name}, nil
}

// parseCount parses a positive integer literal.
func (p *parser) parseCount(what string) (int64, error) {
	t := p.cur()
	if t.tok != NUMBER {
		p.want(what)
		return 0, p.fail()
	}
	n, err := strconv.ParseInt(t.lit, 10, 64)
	if err != nil || n <= 0 {
		return 0, p.failf(t, "%s must be a positive integer", what)
	}
	p.next()
	return n, nil
}

// parseSetRateLimit parses what follows SET RATE: LIMIT n REQUESTS [, m
// TOKENS] PER MINUTE [FOR target] (either dimension first, each once).
func (p *parser) parseSetRateLimit(on SecurableRef) (Statement, error) {
	if err := p.need(LIMIT); err != nil {
		return nil, err
	}
	s := &SetRateLimit{On: on}
	for {
		start := p.cur()
		n, err := p.parseCount("number of requests or tokens")
		if err != nil {
			return nil, err
		}
		switch {
		case p.accept(REQUESTS):
			if s.Requests != 0 {
				return nil, p.failf(start, "REQUESTS given more than once")
			}
			s.Requests = n
		case p.accept(TOKENS):
			if s.Tokens != 0 {
				return nil, p.failf(start, "TOKENS given more than once")
			}
			s.Tokens = n
		default:
			return nil, p.fail()
		}
		if !p.accept(COMMA) {
			break
		}
	}
	if err := p.need(PER); err != nil {
		return nil, err
	}
	if err := p.need(MINUTE); err != nil {
		return nil, err
	}
	var err error
	s.For, err = p.parseLimitTarget(false)
	return s, err
}

// parseCreateAccessToken parses what follows CREATE ACCESS TOKEN:
// [name] [FOR USER user] [VIA agent] [EXPIRES IN 'lifetime'] [COMMENT 'c'].
// The name is optional and may itself be a word such as via: the clauses
// are tried first without a name, and when they do not take the rest of
// the statement, again after a name.
func (p *parser) parseCreateAccessToken() (Statement, error) {
	start := p.i
	if s, err := p.parseTokenClauses(); err == nil && (p.at(EOF) || p.at(SEMICOLON)) {
		return s, nil
	}
	p.i, p.expect = start, p.expect[:0]
	if p.at(EOF) || p.at(SEMICOLON) {
		return &CreateAccessToken{}, nil
	}
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	s, err := p.parseTokenClauses()
	if err != nil {
		return nil, err
	}
	s.Name = &name
	return s, nil
}

func (p *parser) parseTokenClauses() (*CreateAccessToken, error) {
	s := &CreateAccessToken{}
	if p.accept(FOR) {
		if err := p.need(USER); err != nil {
			return nil, err
		}
		u, err := p.parseName()
		if err != nil {
			return nil, err
		}
		s.User = &u
	}
	if p.accept(VIA) {
		a, err := p.parseName()
		if err != nil {
			return nil, err
		}
		s.Via = &a
	}
	if p.accept(EXPIRES) {
		if err := p.need(IN); err != nil {
			return nil, err
		}
		e, err := p.parseString()
		if err != nil {
			return nil, err
		}
		s.ExpiresIn = &e
	}
	var err error
	if s.Comment, err = p.parseOptComment(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseCreateBudget parses what follows CREATE BUDGET.
func (p *parser) parseCreateBudget() (Statement, error) {
	ifNotExists, err := p.parseIfNotExists()
	if err != nil {
		return nil, err
	}
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	s := &CreateBudget{Name: name, IfNotExists: ifNotExists}
	if err := p.need(LIMIT); err != nil {
		return nil, err
	}
	t := p.cur()
	if t.tok != NUMBER {
		p.want("amount")
		return nil, p.fail()
	}
	if _, err := catalog.ParseBudgetUSD(t.lit); err != nil {
		return nil, p.failf(t, "%s", strings.TrimPrefix(err.Error(), "invalid budget limit "))
	}
	s.Limit = t.lit
	p.next()
	for _, kw := range []Token{USD, PER, MONTH} {
		if err := p.need(kw); err != nil {
			return nil, err
		}
	}
	if s.For, err = p.parseLimitTarget(true); err != nil {
		return nil, err
	}
	if s.For.Level == catalog.LevelService {
		return nil, p.fail()
	}
	if p.accept(ON) {
		typ, err := p.parseObjectType([]ObjectType{ObjModelService})
		if err != nil {
			return nil, err
		}
		on := SecurableRef{Type: typ}
		if on.Name, err = p.parseQName(3); err != nil {
			return nil, err
		}
		s.On = &on
	}
	if p.accept(WHERE) {
		for {
			if err := p.need(TAG); err != nil {
				return nil, err
			}
			k, err := p.parseIdent()
			if err != nil {
				return nil, err
			}
			if err := p.need(EQ); err != nil {
				return nil, err
			}
			v, err := p.parseString()
			if err != nil {
				return nil, err
			}
			s.Tags = append(s.Tags, TagCond{Key: k, Value: v})
			if !p.accept(AND) {
				break
			}
		}
	}
	if s.Comment, err = p.parseOptComment(); err != nil {
		return nil, err
	}
	return s, nil
}
