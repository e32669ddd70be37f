package parser

import "strings"

// Guardrail statements: the FOR and USING clauses of CREATE POLICY,
// ALTER POLICY … SET MODE, ALTER CONNECTION … APPROVE TOOLS and SHOW
// TOOLS. Their words (CALL, RESULT, AND, USING, MODE, ENFORCE, MONITOR,
// APPROVE, TOOLS) are matched as unquoted words, not keywords, so they
// stay usable as names everywhere.

// AlterPolicyMode: ALTER POLICY name SET MODE {ENFORCE | MONITOR}.
type AlterPolicyMode struct {
	Name    Ident
	Monitor bool
}

// ApproveTools: ALTER CONNECTION name APPROVE TOOLS [tool [, ...]] — the
// named tools (every tool not approved as last seen when none is named)
// are pinned at the definition the gateway last saw. A tool is an
// identifier, a quoted identifier or a string literal.
type ApproveTools struct {
	Connection QName
	Tools      []string
}

// ShowTools: SHOW TOOLS ON CONNECTION name.
type ShowTools struct {
	Connection QName
}

func (*AlterPolicyMode) stmt()        {}
func (*ApproveTools) stmt()           {}
func (*ShowTools) stmt()              {}
func (*AlterPolicyMode) Kind() string { return "ALTER POLICY" }
func (*ApproveTools) Kind() string    { return "ALTER CONNECTION" }
func (*ShowTools) Kind() string       { return "SHOW TOOLS" }

func (s *AlterPolicyMode) String() string {
	if s.Monitor {
		return "ALTER POLICY " + s.Name.String() + " SET MODE MONITOR"
	}
	return "ALTER POLICY " + s.Name.String() + " SET MODE ENFORCE"
}

func (s *ApproveTools) String() string {
	out := "ALTER CONNECTION " + s.Connection.String() + " APPROVE TOOLS"
	for i, t := range s.Tools {
		if i > 0 {
			out += ","
		}
		out += " " + QuoteIdent(t)
	}
	return out
}

func (s *ShowTools) String() string { return "SHOW TOOLS ON CONNECTION " + s.Connection.String() }

var (
	_ Statement = (*AlterPolicyMode)(nil)
	_ Statement = (*ApproveTools)(nil)
	_ Statement = (*ShowTools)(nil)
)

// atWord reports whether the current token is the unquoted word w (lower
// case), a keyword or not; otherwise it records w as expected.
func (p *parser) atWord(w string) bool {
	t := p.cur()
	if t.tok.isWord() && t.lit == w {
		return true
	}
	p.want(strings.ToUpper(w))
	return false
}

// acceptWord consumes the unquoted word w.
func (p *parser) acceptWord(w string) bool {
	if p.atWord(w) {
		p.next()
		return true
	}
	return false
}

// needWord consumes the unquoted word w or fails.
func (p *parser) needWord(w string) error {
	if p.acceptWord(w) {
		return nil
	}
	return p.fail()
}

// parsePolicyBody parses what follows CREATE POLICY name ON securable:
// [FOR phases] (AS string | USING name [OPTIONS options]).
func (p *parser) parsePolicyBody(s *CreatePolicy) (Statement, error) {
	if p.accept(FOR) {
		switch {
		case p.acceptWord("call"):
			s.Call = true
		case p.acceptWord("result"):
			s.Result = true
		default:
			return nil, p.fail()
		}
		if p.acceptWord("and") {
			other := "result"
			if s.Result {
				other = "call"
			}
			if err := p.needWord(other); err != nil {
				if t := p.cur(); t.tok.isWord() && (t.lit == "call" || t.lit == "result") {
					return nil, p.failf(t, "a phase is given twice")
				}
				return nil, err
			}
			s.Call, s.Result = true, true
		}
	}
	if p.accept(AS) {
		src, err := p.parseString()
		if err != nil {
			return nil, err
		}
		s.Source = src
		return s, nil
	}
	if !p.acceptWord("using") {
		return nil, p.fail()
	}
	fn, err := p.parseQName(3)
	if err != nil {
		return nil, err
	}
	s.Using = fn
	if p.accept(OPTIONS) {
		if s.Options, err = p.parseOptions(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseAlterPolicy parses what follows ALTER POLICY: name SET MODE
// {ENFORCE | MONITOR}.
func (p *parser) parseAlterPolicy() (Statement, error) {
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	if err := p.need(SET); err != nil {
		return nil, err
	}
	if err := p.needWord("mode"); err != nil {
		return nil, err
	}
	s := &AlterPolicyMode{Name: name}
	switch {
	case p.acceptWord("enforce"):
	case p.acceptWord("monitor"):
		s.Monitor = true
	default:
		return nil, p.fail()
	}
	return s, nil
}

// parseApproveTools parses what follows ALTER CONNECTION name: APPROVE
// TOOLS [tool {, tool}].
func (p *parser) parseApproveTools(conn QName) (Statement, error) {
	if err := p.needWord("approve"); err != nil {
		return nil, err
	}
	if err := p.needWord("tools"); err != nil {
		return nil, err
	}
	s := &ApproveTools{Connection: conn}
	if p.at(EOF) || p.at(SEMICOLON) {
		return s, nil
	}
	for {
		switch t := p.cur(); {
		case t.tok == STRING:
			p.next()
			s.Tools = append(s.Tools, t.lit)
		case p.atIdent():
			p.next()
			s.Tools = append(s.Tools, t.lit)
		default:
			p.want("tool name")
			return nil, p.fail()
		}
		if !p.accept(COMMA) {
			return s, nil
		}
	}
}

// parseShowTools parses what follows SHOW: TOOLS ON CONNECTION name.
func (p *parser) parseShowTools() (Statement, error) {
	if err := p.needWord("tools"); err != nil {
		return nil, err
	}
	if err := p.need(ON); err != nil {
		return nil, err
	}
	if err := p.need(CONNECTION); err != nil {
		return nil, err
	}
	name, err := p.parseQName(maxParts(ObjConnection))
	if err != nil {
		return nil, err
	}
	return &ShowTools{Connection: name}, nil
}
