package sqlfront

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESQLStates: every SQLSTATE a catalog error is reported with is
// in the README's SQLSTATE table.
func TestREADMESQLStates(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n### SQLSTATEs\n")
	if !ok {
		t.Fatal("README has no SQLSTATEs section")
	}
	if i := strings.Index(table, "\n#"); i >= 0 {
		table = table[:i]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| ([0-9A-Z]{5}(?: / [0-9A-Z]{5})*) \|`).FindAllStringSubmatch(table, -1) {
		for c := range strings.SplitSeq(m[1], " / ") {
			documented[c] = true
		}
	}
	for code, state := range codeSQLState {
		if !documented[state] {
			t.Errorf("README's SQLSTATE table lacks %s (catalog code %v)", state, code)
		}
	}
	if !documented["XX000"] {
		t.Error("README's SQLSTATE table lacks XX000 (internal errors)")
	}
}
