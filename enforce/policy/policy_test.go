package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, file string) *Compiled {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policies", file))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(t.Context(), strings.TrimSuffix(file, ".rego"), string(src))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExamplePolicies(t *testing.T) {
	weekdayNoon := "2026-11-25T12:00:00Z" // a Wednesday
	tests := []struct {
		name   string
		policy string
		input  map[string]any
		deny   string // substring of the one deny message; "" = allowed
	}{
		{"contractor calls a read-only tool", "contractors_read_only.rego",
			map[string]any{"groups": []any{"contractors"}, "method": "tools/call", "tool": "search_issues"}, ""},
		{"contractor calls a write tool", "contractors_read_only.rego",
			map[string]any{"groups": []any{"contractors", "account users"}, "method": "tools/call", "tool": "delete_repo"},
			`contractors may only call read-only tools; "delete_repo" is not one`},
		{"employee calls a write tool", "contractors_read_only.rego",
			map[string]any{"groups": []any{"engineers"}, "method": "tools/call", "tool": "delete_repo"}, ""},
		{"contractor lists tools", "contractors_read_only.rego",
			map[string]any{"groups": []any{"contractors"}, "method": "tools/list"}, ""},
		{"weekday noon", "working_hours.rego", map[string]any{"time": weekdayNoon}, ""},
		{"weekday night", "working_hours.rego", map[string]any{"time": "2026-11-25T22:30:00Z"}, "weekdays from 09:00 to 18:00"},
		{"saturday noon", "working_hours.rego", map[string]any{"time": "2026-11-28T12:00:00Z"}, "weekdays from 09:00 to 18:00"},
		{"team matches", "team_argument.rego",
			map[string]any{"groups": []any{"team-payments"}, "method": "tools/call", "tool": "create_ticket", "arguments": map[string]any{"team": "payments"}}, ""},
		{"team does not match", "team_argument.rego",
			map[string]any{"groups": []any{"team-search"}, "method": "tools/call", "tool": "create_ticket", "arguments": map[string]any{"team": "payments"}},
			`argument team="payments" does not match`},
		{"no team argument", "team_argument.rego",
			map[string]any{"groups": []any{"team-search"}, "method": "tools/call", "tool": "create_ticket", "arguments": map[string]any{}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := load(t, tc.policy).Deny(t.Context(), tc.input, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if tc.deny == "" {
				if len(msgs) != 0 {
					t.Fatalf("denied: %v", msgs)
				}
				return
			}
			if len(msgs) != 1 || !strings.Contains(msgs[0], tc.deny) {
				t.Fatalf("deny = %v, want one containing %q", msgs, tc.deny)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"syntax", "package p\ndeny contains msg if {", "policy bad"},
		{"no deny rule", "package p\nallow := true", "must define a `deny` rule"},
		{"unknown builtin", "package p\ndeny contains msg if { msg := no_such_function(1) }", "no_such_function"},
		{"v0 syntax", "package p\ndeny[msg] { msg := \"x\" }", "policy bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(t.Context(), "bad", tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestFailClosed(t *testing.T) {
	t.Run("runtime error", func(t *testing.T) {
		c, err := Compile(t.Context(), "div", "package p\ndeny contains msg if { x := 1 / input.zero; msg := sprintf(\"%v\", [x]) }")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Deny(t.Context(), map[string]any{"zero": 0}, time.Second); err == nil {
			t.Fatal("a failing policy evaluated without an error")
		}
	})
	t.Run("time limit", func(t *testing.T) {
		c, err := Compile(t.Context(), "slow", "package p\ndeny contains msg if { some i in numbers.range(1, 100000000); i < 0; msg := \"never\" }")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = c.Deny(t.Context(), map[string]any{}, 20*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("slow policy: %v, want a time-out", err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the time limit was not enforced (%s)", time.Since(start))
		}
	})
}
