package parser

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func guardrailCases() []validCase {
	conn := SecurableRef{Type: ObjConnection, Name: qn(id("my_github_mcp"))}
	sch := SecurableRef{Type: ObjSchema, Name: qn(id("system"), id("ai"))}
	builtin := func(n string) QName { return qn(id("system"), id("ai"), id(n)) }
	return []validCase{
		// The examples (MODEL SERVICE ones in the model service tests).
		{`CREATE POLICY no_injection ON SCHEMA system.ai FOR RESULT USING system.ai.block_prompt_injection OPTIONS (threshold '0.8');`,
			&CreatePolicy{Name: id("no_injection"), On: sch, Result: true, Using: builtin("block_prompt_injection"),
				Options: []Option{{"threshold", "0.8"}}}},
		{`ALTER POLICY no_injection SET MODE MONITOR;`, &AlterPolicyMode{Name: id("no_injection"), Monitor: true}},
		{`alter policy no_injection set mode enforce`, &AlterPolicyMode{Name: id("no_injection")}},
		{`SHOW POLICIES ON CONNECTION my_github_mcp;`, &ShowPolicies{On: &conn}},
		{`CREATE POLICY no_exfil ON SCHEMA system.ai FOR CALL AND RESULT USING system.ai.prevent_exfiltration OPTIONS (allowed_domains 'docs.example.com, *.corp.example');`,
			&CreatePolicy{Name: id("no_exfil"), On: sch, Call: true, Result: true, Using: builtin("prevent_exfiltration"),
				Options: []Option{{"allowed_domains", "docs.example.com, *.corp.example"}}}},
		{`CREATE POLICY pins ON CONNECTION my_github_mcp FOR CALL AND RESULT USING system.ai.pin_tools;`,
			&CreatePolicy{Name: id("pins"), On: conn, Call: true, Result: true, Using: builtin("pin_tools")}},
		{`ALTER CONNECTION my_github_mcp APPROVE TOOLS`, &ApproveTools{Connection: qn(id("my_github_mcp"))}},
		{`ALTER CONNECTION main.tools.gh APPROVE TOOLS search_repos, "Get-Issue", 'list-prs';`,
			&ApproveTools{Connection: qn(id("main"), id("tools"), id("gh")), Tools: []string{"search_repos", "Get-Issue", "list-prs"}}},
		{`SHOW TOOLS ON CONNECTION my_github_mcp`, &ShowTools{Connection: qn(id("my_github_mcp"))}},

		// Phases in either order; Rego with phases; USING without FOR.
		{`CREATE POLICY r ON CATALOG main FOR RESULT AND CALL AS $$package x$$`,
			&CreatePolicy{Name: id("r"), On: SecurableRef{Type: ObjCatalog, Name: qn(id("main"))}, Call: true, Result: true, Source: "package x"}},
		{`CREATE POLICY r ON CONNECTION c FOR CALL AS 'package x'`,
			&CreatePolicy{Name: id("r"), On: SecurableRef{Type: ObjConnection, Name: qn(id("c"))}, Call: true, Source: "package x"}},
		{`CREATE POLICY pii ON CONNECTION c USING detect_sensitive_data OPTIONS (entities 'EMAIL', action 'mask')`,
			&CreatePolicy{Name: id("pii"), On: SecurableRef{Type: ObjConnection, Name: qn(id("c"))}, Using: qn(id("detect_sensitive_data")),
				Options: []Option{{"entities", "EMAIL"}, {"action", "mask"}}}},
		// The words stay usable as names.
		{`CREATE POLICY using ON CONNECTION tools FOR CALL USING system.ai.pin_tools`,
			&CreatePolicy{Name: id("using"), On: SecurableRef{Type: ObjConnection, Name: qn(id("tools"))}, Call: true, Using: builtin("pin_tools")}},
		{`ALTER CONNECTION approve APPROVE TOOLS tools`, &ApproveTools{Connection: qn(id("approve")), Tools: []string{"tools"}}},
		{`ALTER POLICY mode SET MODE MONITOR`, &AlterPolicyMode{Name: id("mode"), Monitor: true}},
	}
}

func TestGuardrailStatements(t *testing.T) {
	for _, tc := range guardrailCases() {
		t.Run(tc.sql, func(t *testing.T) {
			got, err := ParseStatement(tc.sql)
			if err != nil {
				t.Fatalf("ParseStatement: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("AST mismatch\n got: %#v\nwant: %#v", got, tc.want)
			}
			checkRoundTrip(t, got)
			if !IsGovernance(tc.sql) || !IsGovernance(got.String()) {
				t.Fatalf("IsGovernance(%q) = false", tc.sql)
			}
		})
	}
	kinds := map[string]string{
		`ALTER POLICY p SET MODE MONITOR`:  "ALTER POLICY",
		`ALTER CONNECTION c APPROVE TOOLS`: "ALTER CONNECTION",
		`SHOW TOOLS ON CONNECTION c`:       "SHOW TOOLS",
	}
	for sql, want := range kinds {
		s, err := ParseStatement(sql)
		if err != nil || s.Kind() != want {
			t.Errorf("%s: Kind %v, %v; want %s", sql, s, err, want)
		}
	}
	// SHOW tools (a PostgreSQL setting) stays PostgreSQL's.
	if IsGovernance(`SHOW tools`) {
		t.Error("IsGovernance(SHOW tools) = true")
	}
}

func TestGuardrailParseErrors(t *testing.T) {
	tests := []struct {
		sql      string
		pos      int
		found    string
		expected []string
		message  string
	}{
		{`CREATE POLICY p ON CONNECTION c`, 31, "end of input", []string{`"."`, "FOR", "AS", "USING"}, ""},
		{`CREATE POLICY p ON CONNECTION c FOR`, 35, "end of input", []string{"CALL", "RESULT"}, ""},
		{`CREATE POLICY p ON CONNECTION c FOR CALL AND CALL USING x`, 45, "CALL", nil, "a phase is given twice"},
		{`CREATE POLICY p ON CONNECTION c FOR CALL RESULT USING x`, 41, "RESULT", []string{"AND", "AS", "USING"}, ""},
		{`CREATE POLICY p ON CONNECTION c USING`, 37, "end of input", []string{"identifier"}, ""},
		{`CREATE POLICY p ON CONNECTION c USING a.b.c.d`, 43, ".", nil, "improper qualified name"},
		{`CREATE POLICY p ON CONNECTION c USING x OPTIONS (a 'b', a 'c')`, 56, "a", nil, "specified more than once"},
		{`ALTER POLICY p MODE MONITOR`, 15, "MODE", []string{"SET"}, ""},
		{`ALTER POLICY p SET MODE OFF`, 24, "OFF", []string{"ENFORCE", "MONITOR"}, ""},
		{`ALTER CONNECTION c APPROVE`, 26, "end of input", []string{"TOOLS"}, ""},
		{`ALTER CONNECTION c APPROVE TOOLS a,`, 35, "end of input", []string{"identifier", "tool name"}, ""},
		{`SHOW TOOLS`, 10, "end of input", []string{"ON"}, ""},
		{`SHOW TOOLS ON SCHEMA s`, 14, "SCHEMA", []string{"CONNECTION"}, ""},
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
