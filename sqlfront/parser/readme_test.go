package parser

import (
	"os"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// TestREADMEStatementsParse: every statement of the README's ```sql blocks
// parses, verbatim: governance statements with this package, queries
// (SELECTs) with PostgreSQL's grammar, as the SQL front end routes them. Statements
// written in grammar notation ([optional], a | b, ...) are not SQL and are
// left out; the ones that are kept must not shrink to a handful.
func TestREADMEStatementsParse(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	checked, skipped := 0, 0
	for _, blk := range sqlBlocks(string(b)) {
		for _, p := range Split(blk) {
			switch {
			case grammarNotation(p.Text):
				skipped++
				continue
			case !IsGovernance(p.Text):
				// The README's queries are SELECTs; anything else here is
				// a governance statement the split did not recognize
				// (PostgreSQL's grammar takes SHOW BUDGET for a setting).
				res, err := pg.Parse(p.Text)
				if err != nil {
					t.Errorf("README query does not parse: %v\n%s", err, p.Text)
				} else if len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetSelectStmt() == nil {
					t.Errorf("README statement is neither a governance statement nor a SELECT:\n%s", p.Text)
				}
			default:
				if _, err := ParseStatement(p.Text); err != nil {
					t.Errorf("README statement does not parse: %v\n%s", err, p.Text)
				}
			}
			checked++
		}
	}
	if checked < 50 {
		t.Errorf("only %d README statements checked (%d in grammar notation left out): are the ```sql blocks still found?", checked, skipped)
	}
}

// sqlBlocks returns the contents of the ```sql fenced blocks of a
// Markdown text.
func sqlBlocks(md string) []string {
	var out []string
	var cur *strings.Builder
	for line := range strings.SplitSeq(md, "\n") {
		switch trimmed := strings.TrimSpace(line); {
		case cur == nil && trimmed == "```sql":
			cur = &strings.Builder{}
		case cur != nil && trimmed == "```":
			out = append(out, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	return out
}

// grammarNotation reports whether a statement uses the README's grammar
// notation outside its strings: [ ], |, or an ellipsis.
func grammarNotation(sql string) bool {
	s := NewScanner(sql)
	dots := 0
	for {
		tok, _, lit := s.Scan()
		switch tok {
		case EOF:
			return false
		case ILLEGAL:
			if strings.Contains(lit, "'['") || strings.Contains(lit, "'|'") {
				return true
			}
		case DOT:
			if dots++; dots == 3 {
				return true
			}
		default:
			dots = 0
		}
	}
}
