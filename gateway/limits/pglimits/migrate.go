package pglimits

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the version of the limits_ tables this package writes.
const SchemaVersion = 1

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLock is the advisory lock Migrate holds (one transaction), so
// that replicas starting together create the tables once.
const migrateLock = int64(0x6c696d6974730001) // "limits" 1

// Migrate creates or upgrades the limits_ tables and functions. It is
// safe to run from several replicas at once: the statements are
// idempotent and run in one transaction under an advisory lock. A
// database whose limits schema is newer than SchemaVersion is refused.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	if len(files) != SchemaVersion {
		return fmt.Errorf("pglimits: %d migrations, want %d", len(files), SchemaVersion)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
			return err
		}
		have := 0
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('limits_schema') IS NOT NULL").Scan(&exists); err != nil {
			return err
		}
		if exists {
			if err := tx.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM limits_schema").Scan(&have); err != nil {
				return err
			}
		}
		if have > SchemaVersion {
			return fmt.Errorf("pglimits: the database's limits schema is version %d, newer than this binary's %d", have, SchemaVersion)
		}
		for i, f := range files {
			v, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(f, "migrations/"), "_", 2)[0])
			if err != nil || v != i+1 {
				return fmt.Errorf("pglimits: migration %s out of sequence", f)
			}
			if v <= have {
				continue
			}
			sql, err := migrations.ReadFile(f)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return fmt.Errorf("pglimits: migration %s: %w", f, err)
			}
		}
		if have < SchemaVersion {
			if _, err := tx.Exec(ctx, "DELETE FROM limits_schema"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO limits_schema (version) VALUES ($1)", SchemaVersion); err != nil {
				return err
			}
		}
		return nil
	})
}
