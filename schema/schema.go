package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// LatestVersion is the schema version of the embedded DuckDB store (the
// event stream) this binary writes: duckdb/ has migrations
// 1..LatestVersion.
const LatestVersion = 4

// Dialects: duckdb/ is the embedded event store (catalog/duckstore),
// postgres/ the PostgreSQL store (catalog/pgstore). Their versions are
// numbered independently.
const (
	DuckDB     = "duckdb"
	PostgreSQL = "postgres"
)

// Migration is one schema change.
type Migration struct {
	Version int    // 1, 2, ...
	Name    string // the file name without version and extension: "init"
	SQL     string // one or more statements separated by semicolons
}

//go:embed duckdb/*.sql postgres/*.sql
var files embed.FS

// Migrations returns the migrations of a dialect sorted by version. It fails
// for an unknown dialect.
func Migrations(dialect string) ([]Migration, error) {
	if dialect != DuckDB && dialect != PostgreSQL {
		return nil, fmt.Errorf("schema: unknown SQL dialect %q", dialect)
	}
	ms, err := load(files, dialect)
	if err != nil {
		return nil, err
	}
	if dialect == DuckDB && len(ms) != LatestVersion {
		return nil, fmt.Errorf("schema: %s has migrations up to version %d, want LatestVersion = %d", dialect, len(ms), LatestVersion)
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("schema: %s has no migrations", dialect)
	}
	return ms, nil
}

// load reads dir/NNNN_name.sql from fsys, sorted by version, and checks that
// the versions are 1, 2, ... without gaps or duplicates.
func load(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		m, err := parseName(e.Name())
		if err != nil {
			return nil, err
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		m.SQL = string(b)
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("schema: %s: migration %04d_%s.sql: want version %d (versions start at 1 without gaps or duplicates)",
				dir, m.Version, m.Name, i+1)
		}
	}
	return ms, nil
}

// parseName parses "0001_init.sql".
func parseName(name string) (Migration, error) {
	base := strings.TrimSuffix(name, ".sql")
	num, label, ok := strings.Cut(base, "_")
	if !ok || label == "" || len(num) != 4 {
		return Migration{}, fmt.Errorf("schema: migration file %q: want NNNN_name.sql", name)
	}
	v, err := strconv.Atoi(num)
	if err != nil || v <= 0 {
		return Migration{}, fmt.Errorf("schema: migration file %q: want NNNN_name.sql with NNNN > 0", name)
	}
	return Migration{Version: v, Name: label}, nil
}
