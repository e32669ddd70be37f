package sqlfront_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/parser"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/sql")

// goldenDir holds the scripts (*.sql) and their expected output (*.golden).
const goldenDir = "../testdata/sql"

// goldenClock is the catalog clock of golden runs, so that the created
// times DESCRIBE prints are stable.
var goldenClock = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// goldenModes are the protocols every script runs with. Both must produce
// the golden output; -update writes it from the first.
var goldenModes = []struct {
	name string
	mode pgx.QueryExecMode
}{
	{"simple", pgx.QueryExecModeSimpleProtocol},
	{"extended", pgx.QueryExecModeCacheStatement},
}

// TestGolden runs every testdata/sql/*.sql script against a fresh front end
// over the wire, once with the simple and once with the extended protocol,
// and compares the transcript with the script's .golden file. Run
//
//	go test ./sqlfront -run Golden -update
//
// to rewrite the golden files, and review the diff.
//
// Script format: statements separated as psql separates them (parser.Split),
// and directive lines between statements:
//
//	-- connect NAME PASSWORD   continue on a new connection as NAME (initially admin);
//	                           if connecting fails the error is printed and the
//	                           previous connection stays current
//	-- database NAME           the database of the following connects (initially system)
//	-- spend BUDGET USER NANOS the limits engine's spend this month for SHOW BUDGETS (USER:
//	                           a FOR EACH USER budget's user, else -); none: 0 spent
//
// Other comment lines between statements are copied to the transcript.
// For each statement the transcript has the statement, then either the
// column names, the rows ("a | b", NULL for null) and the command tag, or
// the error ("ERROR <SQLSTATE>: <message>", then DETAIL and HINT lines).
func TestGolden(t *testing.T) {
	scripts, err := filepath.Glob(filepath.Join(goldenDir, "*.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) == 0 {
		t.Fatalf("no scripts in %s", goldenDir)
	}
	for _, script := range scripts {
		name := strings.TrimSuffix(filepath.Base(script), ".sql")
		golden := strings.TrimSuffix(script, ".sql") + ".golden"
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range goldenModes {
				t.Run(m.name, func(t *testing.T) {
					got := runScript(t, string(src), m.mode)
					if *update && i == 0 {
						if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
							t.Fatal(err)
						}
						return
					}
					want, err := os.ReadFile(golden)
					if err != nil {
						t.Fatalf("%v (run with -update to create it)", err)
					}
					if d := firstDiff(string(want), got); d != "" {
						t.Errorf("%s differs from the %s protocol's transcript (run with -update to rewrite, then review):\n%s", golden, m.name, d)
					}
				})
			}
		})
	}
	t.Run("no stale golden files", func(t *testing.T) {
		goldens, err := filepath.Glob(filepath.Join(goldenDir, "*.golden"))
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range goldens {
			if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".sql"); err != nil {
				t.Errorf("%s has no script: %v", g, err)
			}
		}
	})
}

// scriptRunner runs one script and records its transcript.
type scriptRunner struct {
	t        *testing.T
	f        *frontend
	mode     pgx.QueryExecMode
	conn     *pgx.Conn
	database string
	out      strings.Builder
	spend    *goldenSpend
}

// goldenSpend stands in for the limits engine's SHOW BUDGETS figures in
// golden scripts: the spend the "-- spend" directive recorded, shaped as
// gateway/limits reports it (one row per budget; FOR EACH USER: one row
// per user with spend, none before).
type goldenSpend struct {
	mu    sync.Mutex
	spent map[[2]string]int64 // budget, user (FOR EACH USER) or "" → nano-USD
}

func (g *goldenSpend) status(svc *catalog.Service) []sqlfront.BudgetStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []sqlfront.BudgetStatus
	svc.Read(func(m *catalog.Model) {
		for _, d := range m.Budgets() {
			f, _ := strconv.ParseFloat(d.LimitUSD, 64)
			limit := int64(f*1e9 + 0.5)
			if d.Level != catalog.LevelEachUser {
				spent := g.spent[[2]string{d.Name, ""}]
				out = append(out, sqlfront.BudgetStatus{Budget: d.Name, Principal: d.PrincipalName, SpentNanos: spent,
					RemainingNanos: max(limit-spent, 0)})
				continue
			}
			var users []string
			for k := range g.spent {
				if k[0] == d.Name && k[1] != "" {
					users = append(users, k[1])
				}
			}
			sort.Strings(users)
			for _, u := range users {
				spent := g.spent[[2]string{d.Name, u}]
				out = append(out, sqlfront.BudgetStatus{Budget: d.Name, Principal: u, SpentNanos: spent, RemainingNanos: max(limit-spent, 0)})
			}
		}
	})
	return out
}

// runScript runs src on a fresh front end and returns the transcript.
func runScript(t *testing.T, src string, mode pgx.QueryExecMode) string {
	t.Helper()
	spend := &goldenSpend{spent: map[[2]string]int64{}}
	r := &scriptRunner{t: t, mode: mode, database: catalog.SystemCatalog, spend: spend}
	r.f = startFrontend(t, withClock(func() time.Time { return goldenClock }),
		func(_ *catalog.Options, c *sqlfront.Config) {
			c.BudgetStatus = func(context.Context) ([]sqlfront.BudgetStatus, error) { return spend.status(r.f.Svc), nil }
		})
	r.conn = r.f.mustConnect(t, catalog.AdminUser, adminPassword, r.database)
	var pending strings.Builder // statement text not yet terminated
	for _, line := range strings.SplitAfter(src, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.TrimSpace(pending.String()) == "" && strings.HasPrefix(trimmed, "--") {
			pending.Reset()
			r.comment(trimmed)
			continue
		}
		pending.WriteString(line)
		if terminated(pending.String()) {
			r.statements(pending.String())
			pending.Reset()
		}
	}
	if strings.TrimSpace(pending.String()) != "" {
		r.statements(pending.String())
	}
	return r.out.String()
}

// terminated reports whether text ends with a statement-ending semicolon
// (possibly followed by whitespace and comments).
func terminated(text string) bool {
	pieces := parser.Split(text)
	rest := text
	if n := len(pieces); n > 0 {
		rest = text[pieces[n-1].Offset+len(pieces[n-1].Text):]
	}
	s := parser.NewScanner(rest)
	for {
		tok, _, _ := s.Scan()
		switch tok {
		case parser.SEMICOLON:
			return true
		case parser.EOF:
			return false
		}
	}
}

func (r *scriptRunner) printf(format string, args ...any) { fmt.Fprintf(&r.out, format, args...) }

// comment handles a comment line between statements: a directive or text
// copied to the transcript.
func (r *scriptRunner) comment(line string) {
	r.t.Helper()
	r.printf("%s\n", line)
	f := strings.Fields(strings.TrimPrefix(line, "--"))
	if len(f) == 0 {
		return
	}
	switch f[0] {
	case "connect":
		if len(f) != 3 {
			r.t.Fatalf("bad directive %q: want -- connect NAME PASSWORD", line)
		}
		conn, err := r.f.connect(r.t, f[1], f[2], r.database)
		if err != nil {
			r.printError(err)
			r.printf("\n")
			return
		}
		_ = r.conn.Close(r.t.Context())
		r.conn = conn
	case "spend": // -- spend BUDGET USER|- NANO-USD: the engine's figure for the month
		if len(f) != 4 {
			r.t.Fatalf("bad directive %q: want -- spend BUDGET USER|- NANO-USD", line)
		}
		n, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			r.t.Fatalf("bad directive %q: %v", line, err)
		}
		user := f[2]
		if user == "-" {
			user = ""
		}
		r.spend.mu.Lock()
		r.spend.spent[[2]string{f[1], user}] += n
		r.spend.mu.Unlock()
	case "database":
		if len(f) != 2 {
			r.t.Fatalf("bad directive %q: want -- database NAME", line)
		}
		r.database = f[1]
	}
}

// statements runs every statement of text.
func (r *scriptRunner) statements(text string) {
	r.t.Helper()
	for _, p := range parser.Split(text) {
		r.printf("%s;\n", p.Text)
		r.run(p.Text)
		r.printf("\n")
	}
}

// run runs one statement and prints its result or error.
func (r *scriptRunner) run(sql string) {
	r.t.Helper()
	rows, err := r.conn.Query(r.t.Context(), sql, r.mode)
	if err != nil {
		r.printError(err)
		return
	}
	var lines []string
	if fds := rows.FieldDescriptions(); len(fds) > 0 {
		names := make([]string, len(fds))
		for i, fd := range fds {
			names[i] = fd.Name
		}
		lines = append(lines, strings.Join(names, " | "))
	}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			r.t.Fatalf("%s: decoding row: %v", sql, err)
		}
		cells := make([]string, len(vals))
		for i, v := range vals {
			cells[i] = formatValue(v)
		}
		lines = append(lines, strings.Join(cells, " | "))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		r.printError(err)
		return
	}
	for _, l := range lines {
		r.printf("%s\n", l)
	}
	r.printf("%s\n", rows.CommandTag().String())
}

// formatValue prints a decoded value the same way for both protocols.
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		if catalog.LooksLikeAccessToken(x) {
			return catalog.AccessTokenPrefix + "<random>" // shown once, different every run
		}
		if strings.HasPrefix(x, "pat_") && len(x) == 20 {
			return "pat_<token id>" // a hash of the random token
		}
		return x
	case pgtype.Numeric:
		b, _ := x.Value()
		return fmt.Sprint(b)
	case bool:
		if x {
			return "t"
		}
		return "f"
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

func (r *scriptRunner) printError(err error) {
	r.t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		r.t.Fatalf("got error %v (%T), want a PostgreSQL error", err, err)
	}
	r.printf("%s %s: %s\n", pe.Severity, pe.Code, pe.Message)
	if pe.Detail != "" {
		r.printf("DETAIL: %s\n", pe.Detail)
	}
	if pe.Hint != "" {
		r.printf("HINT: %s\n", pe.Hint)
	}
}

// firstDiff describes the first line where want and got differ, with
// context, or returns "" when they are equal.
func firstDiff(want, got string) string {
	if want == got {
		return ""
	}
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	from := max(0, i-3)
	var b strings.Builder
	fmt.Fprintf(&b, "first difference at line %d\n--- want\n", i+1)
	for j := from; j < min(len(w), i+4); j++ {
		fmt.Fprintf(&b, "%4d  %s\n", j+1, w[j])
	}
	b.WriteString("+++ got\n")
	for j := from; j < min(len(g), i+4); j++ {
		fmt.Fprintf(&b, "%4d  %s\n", j+1, g[j])
	}
	return b.String()
}
