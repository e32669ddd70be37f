package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEFlagTables: the README's flag tables of mandate serve and
// mandate gateway list every flag of their --help, each with its
// environment variable and, where the table's default is a single value,
// the flag's default; the gateway's flags it does not table are named as
// working like serve's, and serve has them.
func TestREADMEFlagTables(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	serveHelp := helpFlags(t, func(out io.Writer) error { _, err := parseServeFlags([]string{"--help"}, out, out); return err })
	gatewayHelp := helpFlags(t, func(out io.Writer) error { _, err := parseGatewayFlags([]string{"--help"}, out, out); return err })

	serveDoc := flagTable(section(t, readme, "## `mandate serve`"))
	checkTable(t, "mandate serve", serveHelp, serveDoc, nil)

	gw := section(t, readme, "### `mandate gateway`")
	gatewayDoc := flagTable(gw)
	_, rest, ok := strings.Cut(gw, "work as for `mandate serve`")
	if !ok {
		t.Fatal("README: the gateway's section does not say which flags work as for mandate serve")
	}
	asServe := map[string]bool{}
	for _, m := range regexp.MustCompile("`--([a-z-]+)`").FindAllStringSubmatch(rest, -1) {
		asServe[m[1]] = true
		if _, ok := serveDoc[m[1]]; !ok {
			t.Errorf("README: gateway flag --%s is said to work as for mandate serve, whose table lacks it", m[1])
		}
	}
	checkTable(t, "mandate gateway", gatewayHelp, gatewayDoc, asServe)
}

// helpFlag is a flag as --help shows it.
type helpFlag struct{ env, def string }

// helpFlags runs a subcommand's flag parsing with --help and returns its
// flags by name.
func helpFlags(t *testing.T, parse func(io.Writer) error) map[string]helpFlag {
	t.Helper()
	var out bytes.Buffer
	if err := parse(&out); !errors.Is(err, errHelp) {
		t.Fatalf("--help: %v", err)
	}
	flags := map[string]helpFlag{}
	re := regexp.MustCompile(`(?m)^  --([a-z-]+) \[([A-Z_]+)\]\n      .*?(?: \(default "([^"]*)"\))?$`)
	for _, m := range re.FindAllStringSubmatch(out.String(), -1) {
		flags[m[1]] = helpFlag{env: m[2], def: m[3]}
	}
	if len(flags) < 10 {
		t.Fatalf("--help lists %d flags:\n%s", len(flags), out.String())
	}
	return flags
}

// section is the README from heading to the next heading.
func section(t *testing.T, readme, heading string) string {
	t.Helper()
	_, s, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no heading %q", heading)
	}
	if i := strings.Index(s, "\n#"); i >= 0 {
		s = s[:i]
	}
	return s
}

// flagTable reads the rows "| `--a`, `--b` | `ENV_A`, `ENV_B` | default |"
// of a section: each flag's environment variable and default cell.
func flagTable(s string) map[string]helpFlag {
	flags := map[string]helpFlag{}
	tick := regexp.MustCompile("`([^`]+)`")
	for line := range strings.SplitSeq(s, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "| `--") || len(cells) < 3 {
			continue
		}
		names, envs := tick.FindAllStringSubmatch(cells[0], -1), tick.FindAllStringSubmatch(cells[1], -1)
		for i, n := range names {
			f := helpFlag{def: cells[2]}
			if i < len(envs) {
				f.env = envs[i][1]
			}
			flags[strings.TrimPrefix(n[1], "--")] = f
		}
	}
	return flags
}

// checkTable compares a command's --help with its README table (and the
// flags documented as working like serve's).
func checkTable(t *testing.T, cmd string, help, doc map[string]helpFlag, asServe map[string]bool) {
	t.Helper()
	for name, h := range help {
		d, ok := doc[name]
		switch {
		case !ok && asServe[name]:
		case !ok:
			t.Errorf("README: %s's flag --%s is not documented", cmd, name)
		case d.env != h.env:
			t.Errorf("README: %s --%s: variable %q, --help says %q", cmd, name, d.env, h.env)
		case h.def != "" && !sameDefault(h.def, d.def):
			t.Errorf("README: %s --%s: default %q, --help says %q", cmd, name, d.def, h.def)
		}
	}
	for name := range doc {
		if _, ok := help[name]; !ok {
			t.Errorf("README documents %s --%s, which --help does not list", cmd, name)
		}
	}
	for name := range asServe {
		if _, ok := help[name]; !ok {
			t.Errorf("README says %s --%s works as for mandate serve; --help does not list it", cmd, name)
		}
	}
}

// sameDefault reports whether a README default cell states def: its first
// `value` equals it (durations compared as durations), or, for a cell
// that explains the default in words, its text names the number.
func sameDefault(def, cell string) bool {
	m := regexp.MustCompile("^`([^`]+)`").FindStringSubmatch(cell)
	if m == nil {
		return true // described in words (16 MiB, none, off, ...)
	}
	v := m[1]
	if v == def || v+"B" == def {
		return true
	}
	d1, err1 := time.ParseDuration(def)
	d2, err2 := time.ParseDuration(v)
	return err1 == nil && err2 == nil && d1 == d2
}
