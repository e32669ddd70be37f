package duckstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

func TestHardening(t *testing.T) {
	s := openT(t, t.TempDir())
	ctx := t.Context()
	outside := filepath.Join(t.TempDir(), "leak.csv")
	refused := []string{
		"SET threads = 1",
		"SET GLOBAL enable_external_access = true",
		"RESET lock_configuration",
		"SET autoload_known_extensions = true",
		"COPY grants TO '" + outside + "'",
		"SELECT * FROM read_csv('/etc/passwd')",
		"ATTACH '" + filepath.Join(t.TempDir(), "other.duckdb") + "' AS other",
		"INSTALL httpfs",
		"LOAD httpfs",
	}
	for _, q := range refused {
		if _, err := s.db.ExecContext(ctx, q); err == nil {
			t.Errorf("%s: succeeded, want refused", q)
		}
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("COPY wrote %s: %v", outside, err)
	}
	// Every connection of the pool has the settings, the time zone included.
	conns := make([]*sql.Conn, DefaultMaxConns-1) // the store holds one
	for i := range conns {
		c, err := s.db.Conn(ctx)
		must(t, err)
		defer c.Close()
		conns[i] = c
	}
	for i, c := range conns {
		var ext, tz, lock string
		must(t, c.QueryRowContext(ctx, `SELECT current_setting('enable_external_access')::VARCHAR,
			current_setting('TimeZone'), current_setting('lock_configuration')::VARCHAR`).Scan(&ext, &tz, &lock))
		if ext != "false" || tz != "UTC" || lock != "true" {
			t.Errorf("connection %d: enable_external_access=%s TimeZone=%s lock_configuration=%s", i, ext, tz, lock)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(file, nil, 0o600))
	tests := []struct {
		name string
		dir  string
		opts Options
		code catalog.Code
	}{
		{"empty dir", "", Options{}, catalog.CodeInvalidArgument},
		{"question mark", filepath.Join(t.TempDir(), "a?b"), Options{}, catalog.CodeInvalidArgument},
		{"hash", filepath.Join(t.TempDir(), "a#b"), Options{}, catalog.CodeInvalidArgument},
		{"one connection", t.TempDir(), Options{MaxConns: 1}, catalog.CodeInvalidArgument},
		{"dir is a file", filepath.Join(file, "sub"), Options{}, catalog.CodeUnavailable},
		{"bad memory limit", t.TempDir(), Options{MemoryLimit: "lots"}, catalog.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.dir, tt.opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			var ce *catalog.Error
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("Open = %v (%T), want a *catalog.Error with code %d", err, err, tt.code)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir(), Options{MaxConns: 3, Threads: 1, MemoryLimit: "256MB", MaxTempDirectorySize: "1GiB"})
	must(t, err)
	defer s.Close()
	var threads int64
	var mem, temp string
	must(t, s.db.QueryRowContext(t.Context(),
		`SELECT current_setting('threads'), current_setting('memory_limit'), current_setting('max_temp_directory_size')`).Scan(&threads, &mem, &temp))
	if threads != 1 || mem != "244.1 MiB" || temp != "1.0 GiB" {
		t.Errorf("threads = %d, memory_limit = %s, max_temp_directory_size = %s", threads, mem, temp)
	}
	if got := s.db.Stats().MaxOpenConnections; got != 3 {
		t.Errorf("MaxOpenConnections = %d, want 3", got)
	}
}

func TestOpenTwiceInProcess(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	s2, err := Open(t.Context(), dir, Options{})
	if err == nil {
		_ = s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if !catalog.IsCode(err, catalog.CodeUnavailable) || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("second Open = %v, want CodeUnavailable 'already open'", err)
	}
	// The first store is unharmed.
	if _, err := s.AuditedRevision(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// Readers outside a write transaction see the committed state only, while
// the transaction runs.
func TestIsolation(t *testing.T) {
	s := openT(t, t.TempDir())
	e := catalog.AuditEvent{EventID: "e", Revision: 1}
	err := s.write(t.Context(), func(ctx context.Context, tx *writeTx) error {
		must(t, tx.AppendAudit(ctx, e))
		must(t, tx.flushAudit(ctx))
		must(t, tx.setMeta(ctx, map[string]int64{"audit_revision": 1}))
		es, err := s.ListAudit(ctx, time.Time{}, 0)
		must(t, err)
		m, err := s.AuditedRevision(ctx)
		must(t, err)
		if len(es) != 0 || m != 0 {
			t.Errorf("outside the transaction: %v %d, want nothing", es, m)
		}
		return nil
	})
	must(t, err)
	es, err := s.ListAudit(t.Context(), time.Time{}, 0)
	must(t, err)
	if len(es) != 1 || es[0].EventID != "e" {
		t.Errorf("after commit: %v", es)
	}
}

// A write that fails poisons the transaction: even if fn ignores the error,
// nothing commits. A buffered write fails when it is written (here at the
// commit); a statement fails at once, and so does every later call.
func TestFailedWriteAbortsTransaction(t *testing.T) {
	bad := "\xff\xfe not UTF-8" // DuckDB refuses invalid UTF-8 in VARCHAR
	tests := []struct {
		name      string
		write     func(ctx context.Context, tx *writeTx) error
		immediate bool
	}{
		{"buffered audit", func(ctx context.Context, tx *writeTx) error {
			return tx.AppendAudit(ctx, catalog.AuditEvent{EventID: bad})
		}, false},
		{"statement", func(ctx context.Context, tx *writeTx) error {
			return tx.exec(ctx, "bad", "UPDATE mandate_meta SET value = 'x' WHERE key = 'log_seq'")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openT(t, t.TempDir())
			var writeErr, nextErr error
			err := s.write(t.Context(), func(ctx context.Context, tx *writeTx) error {
				must(t, tx.setMeta(ctx, map[string]int64{"audit_revision": 1}))
				writeErr = tt.write(ctx, tx)
				nextErr = tx.setMeta(ctx, map[string]int64{"audit_revision": 2})
				return nil // ignore the errors
			})
			if tt.immediate && (writeErr == nil || nextErr == nil) {
				t.Fatalf("write: %v, next call: %v; want both to fail", writeErr, nextErr)
			}
			if err == nil {
				t.Fatal("write committed a transaction with a failed write")
			}
			if catalog.CodeOf(err) != catalog.CodeInternal {
				t.Errorf("write = %v, want CodeInternal", err)
			}
			if m, err := s.AuditedRevision(t.Context()); err != nil || m != 0 {
				t.Errorf("AuditedRevision = %d, %v after the failed transaction", m, err)
			}
			// The store goes on.
			must(t, s.AppendChangeAudit(t.Context(), 1, nil))
		})
	}
}

func TestTxUsedAfterFinish(t *testing.T) {
	s := openT(t, t.TempDir())
	var kept *writeTx
	must(t, s.write(t.Context(), func(ctx context.Context, tx *writeTx) error { kept = tx; return nil }))
	ctx := t.Context()
	for name, err := range map[string]error{
		"AppendAudit": kept.AppendAudit(ctx, catalog.AuditEvent{}),
		"setMeta":     kept.setMeta(ctx, map[string]int64{"audit_revision": 9}),
		"metaValue":   func() error { _, err := kept.metaValue(ctx, "log_seq"); return err }(),
	} {
		if err == nil {
			t.Errorf("%s on a finished transaction succeeded", name)
		}
	}
	if m, err := s.AuditedRevision(ctx); err != nil || m != 0 {
		t.Errorf("a finished transaction wrote: %d, %v", m, err)
	}
}

// Events with the same time are listed in the order they were appended.
func TestAuditSameTimeInAppendOrder(t *testing.T) {
	s := openT(t, t.TempDir())
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	var want []string
	for batch := range 3 {
		var es []catalog.AuditEvent
		for i := range 50 {
			id := fmt.Sprintf("%d-%02d", batch, 49-i) // IDs sort against append order
			es = append(es, catalog.AuditEvent{EventID: id, Time: at})
			want = append(want, id)
		}
		must(t, s.AppendAudit(t.Context(), es...))
	}
	got, err := s.ListAudit(t.Context(), at, 0)
	must(t, err)
	var ids []string
	for _, e := range got {
		ids = append(ids, e.EventID)
	}
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("order = %v, want %v", ids, want)
	}
}

func TestAuditStatusCodeRange(t *testing.T) {
	s := openT(t, t.TempDir())
	err := s.AppendAudit(t.Context(), catalog.AuditEvent{EventID: "x", StatusCode: 1 << 40})
	if !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Errorf("AppendAudit = %v, want CodeInvalidArgument", err)
	}
}

func TestTranslate(t *testing.T) {
	live := t.Context()
	canceled, cancel := context.WithCancel(live)
	cancel()
	cerr := catalog.Errorf(catalog.CodeNotFound, "x")
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		code   catalog.Code
		wraps  error
		passes bool // returned as it is
	}{
		{name: "catalog error", ctx: live, err: cerr, code: catalog.CodeNotFound, passes: true},
		{name: "done ctx", ctx: canceled, err: errors.New("INTERRUPT Error: Interrupted!"), code: catalog.CodeInternal, wraps: context.Canceled},
		{name: "ctx error", ctx: live, err: fmt.Errorf("x: %w", context.DeadlineExceeded), code: catalog.CodeInternal, wraps: context.DeadlineExceeded},
		{name: "closed", ctx: live, err: errors.New("sql: database is closed"), code: catalog.CodeUnavailable},
		{name: "conn done", ctx: live, err: sql.ErrConnDone, code: catalog.CodeUnavailable, wraps: sql.ErrConnDone},
		{name: "tx done", ctx: live, err: sql.ErrTxDone, code: catalog.CodeInternal, wraps: sql.ErrTxDone},
		{name: "io", ctx: live, err: &duckdb.Error{Type: duckdb.ErrorTypeIO, Msg: "IO Error: disk full"}, code: catalog.CodeUnavailable},
		{name: "fatal", ctx: live, err: fmt.Errorf("w: %w", &duckdb.Error{Type: duckdb.ErrorTypeFatal, Msg: "FATAL Error: fsync failed"}), code: catalog.CodeUnavailable},
		{name: "constraint", ctx: live, err: &duckdb.Error{Type: duckdb.ErrorTypeConstraint, Msg: "Constraint Error: dup"}, code: catalog.CodeInternal},
		{name: "other", ctx: live, err: errors.New("boom"), code: catalog.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := translate(tt.ctx, "op", tt.err)
			var ce *catalog.Error
			if !errors.As(got, &ce) || ce.Code != tt.code {
				t.Fatalf("translate = %v (%T), want code %d", got, got, tt.code)
			}
			if tt.passes && got != tt.err {
				t.Errorf("translate did not pass %v through", tt.err)
			}
			if tt.wraps != nil && !errors.Is(got, tt.wraps) {
				t.Errorf("translate = %v, does not wrap %v", got, tt.wraps)
			}
			if !tt.passes && (!errors.Is(got, tt.err) || !strings.Contains(ce.Msg, "op")) {
				t.Errorf("translate = %q, want the cause wrapped and the operation named", ce.Msg)
			}
		})
	}
	if translate(live, "op", nil) != nil {
		t.Error("translate(nil) != nil")
	}
}
