package parser

// Piece is one statement of a query string, as returned by Split.
type Piece struct {
	// Text is the statement from its first token to its last, without
	// the terminating semicolon and surrounding whitespace or comments.
	Text string
	// Offset is the byte offset of Text in the query string.
	Offset int
}

// Split splits a query string into its top-level statements at the
// semicolons that are outside quoted identifiers, string literals
// (including E'...' and dollar-quoted strings), comments and parentheses,
// and, like psql, outside the BEGIN ... END body of a CREATE [OR REPLACE]
// FUNCTION|PROCEDURE statement. Statements that are empty or contain only
// whitespace and comments are dropped. Split works on any SQL, not only
// governance statements; text it cannot tokenize stays in its statement.
func Split(sql string) []Piece {
	var (
		out    []Piece
		s      = NewScanner(sql)
		start  = -1 // offset of the statement's first token
		end    int  // offset just past its last token
		parens int
		body   bodyTracker
	)
	for {
		tok, pos, lit := s.Scan()
		if tok == EOF {
			break
		}
		if tok == SEMICOLON && parens == 0 && body.depth == 0 {
			if start >= 0 {
				out = append(out, Piece{Text: sql[start:end], Offset: start})
			}
			start, parens, body = -1, 0, bodyTracker{}
			continue
		}
		if start < 0 {
			start = pos
		}
		end = s.End()
		switch {
		case tok == LPAREN:
			parens++
		case tok == RPAREN && parens > 0:
			parens--
		case tok.isWord():
			body.word(lit, parens)
		}
	}
	if start >= 0 {
		out = append(out, Piece{Text: sql[start:end], Offset: start})
	}
	return out
}

// bodyTracker follows psql's heuristic for SQL-standard function bodies:
// in a statement starting CREATE [OR REPLACE] {FUNCTION|PROCEDURE}, BEGIN
// (and CASE inside it) open a block that END closes, and semicolons inside
// a block do not end the statement.
type bodyTracker struct {
	words int     // unquoted words seen so far in the statement
	first [4]byte // initials of the leading CREATE/OR/REPLACE/FUNCTION/PROCEDURE words
	depth int
}

func (b *bodyTracker) word(w string, parens int) {
	if b.words < len(b.first) {
		switch w {
		case "create", "or", "replace", "function", "procedure":
			b.first[b.words] = w[0]
		}
	}
	b.words++
	f := b.first
	routine := f[0] == 'c' && (f[1] == 'f' || f[1] == 'p' || (f[1] == 'o' && f[2] == 'r' && (f[3] == 'f' || f[3] == 'p')))
	if !routine || parens > 0 {
		return
	}
	switch w {
	case "begin":
		b.depth++
	case "case":
		if b.depth > 0 {
			b.depth++
		}
	case "end":
		if b.depth > 0 {
			b.depth--
		}
	}
}

// IsGovernance reports whether the leading keywords of sql (after any
// whitespace and comments) start one of the governance statements this
// package parses. Other SQL (SELECT, SET, SHOW search_path, CREATE TABLE,
// ...) is left to the PostgreSQL grammar.
func IsGovernance(sql string) bool {
	s := NewScanner(sql)
	var t [3]Token
	var lit [3]string
	for i := range t {
		t[i], _, lit[i] = s.Scan()
		if t[i] == EOF {
			break
		}
	}
	isType := func(a, b Token) bool {
		switch a {
		case CATALOG, SCHEMA, CONNECTION, USER, GROUP:
			return true
		case SERVICE:
			return b == PRINCIPAL
		case MODEL:
			return b == SERVICE || b == PROVIDER
		}
		return false
	}
	switch t[0] {
	case CREATE, DROP:
		return isType(t[1], t[2]) || t[1] == POLICY || t[1] == BUDGET || (t[1] == ACCESS && t[2] == TOKEN)
	case ALTER, DESCRIBE, DESC:
		return isType(t[1], t[2]) || (t[0] == ALTER && t[1] == POLICY)
	case COMMENT:
		return t[1] == ON && (t[2] == CATALOG || t[2] == SCHEMA || t[2] == CONNECTION || t[2] == MODEL)
	case GRANT, REVOKE:
		return true
	case EXPLAIN:
		return t[1] == ACCESS
	case SHOW:
		switch t[1] {
		case GRANTS, CATALOGS, SCHEMAS, CONNECTIONS, USERS, GROUPS, REVISION, POLICIES:
			return true
		case SERVICE:
			return t[2] == PRINCIPALS
		case CONNECTION:
			return t[2] == STATUS
		case BUDGETS:
			return true
		case MODEL:
			return t[2] == SERVICES || t[2] == PROVIDER
		case RATE:
			return t[2] == LIMITS
		case ACCESS:
			return t[2] == TOKENS
		}
		return t[1].isWord() && lit[1] == "tools" && t[2] == ON // SHOW TOOLS ON CONNECTION c
	}
	return false
}
