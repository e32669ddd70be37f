package schema

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestMigrations(t *testing.T) {
	ms, err := Migrations(DuckDB)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != LatestVersion {
		t.Fatalf("got %d migrations, want %d", len(ms), LatestVersion)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Errorf("migration %d has version %d", i, m.Version)
		}
		if m.Name == "" || strings.TrimSpace(m.SQL) == "" {
			t.Errorf("migration %d: empty name or SQL: %+v", m.Version, m)
		}
	}
	if ms[0].Name != "init" {
		t.Errorf("first migration is %q, want init", ms[0].Name)
	}
	for _, table := range []string{"mandate_meta", "principals", "memberships", "securables", "grants", "audit_events"} {
		if !strings.Contains(ms[0].SQL, "CREATE TABLE "+table+" (") {
			t.Errorf("0001_init.sql does not create %s", table)
		}
	}
}

func TestMigrationsUnknownDialect(t *testing.T) {
	for _, d := range []string{"", "postgresql", "DUCKDB", "sqlite"} {
		if _, err := Migrations(d); err == nil {
			t.Errorf("Migrations(%q): want an error", d)
		}
	}
}

func TestLoad(t *testing.T) {
	file := func(sql string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(sql)} }
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    []Migration // nil with wantErr
		wantErr string
	}{
		{
			name: "sorted by version, other files ignored",
			files: fstest.MapFS{
				"d/0002_second.sql":  file("B"),
				"d/0001_first.sql":   file("A"),
				"d/0010_tenth.txt":   file("x"),
				"d/README.md":        file("x"),
				"d/0003_third.sql":   file("C"),
				"d/sub/0004_sub.sql": file("D"),
			},
			want: []Migration{{1, "first", "A"}, {2, "second", "B"}, {3, "third", "C"}},
		},
		{name: "empty dir", files: fstest.MapFS{"d/x.md": file("")}, want: nil},
		{name: "missing dir", files: fstest.MapFS{}, wantErr: "file does not exist"},
		{name: "gap", files: fstest.MapFS{"d/0001_a.sql": file("A"), "d/0003_c.sql": file("C")}, wantErr: "want version 2"},
		{name: "does not start at 1", files: fstest.MapFS{"d/0002_b.sql": file("B")}, wantErr: "want version 1"},
		{name: "duplicate", files: fstest.MapFS{"d/0001_a.sql": file("A"), "d/0001_b.sql": file("B")}, wantErr: "want version 2"},
		{name: "no name", files: fstest.MapFS{"d/0001.sql": file("A")}, wantErr: "want NNNN_name.sql"},
		{name: "empty name", files: fstest.MapFS{"d/0001_.sql": file("A")}, wantErr: "want NNNN_name.sql"},
		{name: "short number", files: fstest.MapFS{"d/1_a.sql": file("A")}, wantErr: "want NNNN_name.sql"},
		{name: "not a number", files: fstest.MapFS{"d/000x_a.sql": file("A")}, wantErr: "NNNN > 0"},
		{name: "zero", files: fstest.MapFS{"d/0000_a.sql": file("A")}, wantErr: "NNNN > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := load(tt.files, "d")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("migration %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}
