// Package embedded opens the stores of a data directory for one Mandate
// process (mandate serve --store embedded): the catalog's change records
// and snapshot (catalog/walstore: catalog.wal, catalog.snapshot) and the
// event stream (catalog/auditwal in front of catalog/duckstore: audit.wal,
// catalog.duckdb). With a PostgreSQL catalog (catalog/pgstore) each
// replica keeps only its event stream here (OpenEvents).
//
// # Upgrade
//
// Data directories written before the split kept the catalog in DuckDB
// tables behind catalog.wal, a write-ahead log of catalog rows and audit
// events applied in the background. Open upgrades such a directory on its
// first start, in steps that are each durable and repeatable, so that a
// crash at any point is finished by the next start:
//
//  1. without catalog.snapshot: the catalog is the tables plus the catalog
//     rows of the log records not yet applied to them; it is written as the
//     snapshot (its revision and next free ID included);
//  2. the audit events of those records are appended to audit_events, and
//     in the same DuckDB transaction the tables are emptied and the
//     AuditedRevision set to the snapshot's revision (every catalog change
//     up to it had its audit in the table);
//  3. catalog.wal is emptied; the catalog log of the current format starts.
//
// DuckDB's schema version 4 marks the directory, so that the Mandate before
// the split refuses it instead of bootstrapping an empty catalog.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/walstore"
)

// Options configure the stores.
type Options struct {
	Logger zerolog.Logger
	Duck   duckstore.Options
	Events auditwal.Options
}

// Stores are the stores of one data directory.
type Stores struct {
	// Catalog is the catalog's persistence (nil from OpenEvents).
	Catalog *walstore.Store
	// Events is the event stream: the log in front of DuckDB.
	Events *auditwal.Log
	// Duck is the DuckDB store behind Events (query engine, retention).
	Duck *duckstore.Store
}

// Open opens (creating them if needed) the catalog and the event stream of
// dir, upgrading a data directory of the older layout first.
func Open(ctx context.Context, dir string, o Options) (*Stores, error) {
	duck, err := openDuck(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	if err := upgrade(ctx, dir, duck, o.Logger); err != nil {
		duck.Close()
		return nil, err
	}
	cat, err := walstore.Open(ctx, dir, walstore.Options{Logger: o.Logger})
	if err != nil {
		duck.Close()
		return nil, err
	}
	events, err := openEvents(ctx, dir, duck, o)
	if err != nil {
		cat.Close()
		return nil, err
	}
	return &Stores{Catalog: cat, Events: events, Duck: duck}, nil
}

// OpenEvents opens only the event stream of dir, for a process whose
// catalog is elsewhere (PostgreSQL). A directory that holds an embedded
// catalog is refused: its event stream's AuditedRevision counts that
// catalog's revisions, not the other's.
func OpenEvents(ctx context.Context, dir string, o Options) (*Stores, error) {
	if walstore.HasSnapshot(dir) || nonEmpty(filepath.Join(dir, walstore.FileName)) {
		return nil, catalog.Errorf(catalog.CodeIncompatibleData,
			"data directory %s holds an embedded catalog; give a PostgreSQL-backed Mandate a data directory of its own", dir)
	}
	duck, err := openDuck(ctx, dir, o)
	if err != nil {
		return nil, err
	}
	if st, _, err := duck.Legacy(ctx); err != nil || st != nil {
		duck.Close()
		if err == nil {
			err = catalog.Errorf(catalog.CodeIncompatibleData,
				"data directory %s holds an embedded catalog; give a PostgreSQL-backed Mandate a data directory of its own", dir)
		}
		return nil, err
	}
	events, err := openEvents(ctx, dir, duck, o)
	if err != nil {
		return nil, err
	}
	return &Stores{Events: events, Duck: duck}, nil
}

func nonEmpty(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Size() > 0
}

func openDuck(ctx context.Context, dir string, o Options) (*duckstore.Store, error) {
	d := o.Duck
	d.Logger = o.Logger
	return duckstore.Open(ctx, dir, d)
}

func openEvents(ctx context.Context, dir string, duck *duckstore.Store, o Options) (*auditwal.Log, error) {
	e := o.Events
	e.Logger = o.Logger
	events, err := auditwal.Open(ctx, dir, duck, e)
	if err != nil {
		duck.Close()
		return nil, err
	}
	return events, nil
}

// Close closes the stores (the event stream closes DuckDB).
func (s *Stores) Close() error {
	var err error
	if s.Catalog != nil {
		err = s.Catalog.Close()
	}
	return errors.Join(err, s.Events.Close())
}

// upgrade moves the catalog of a data directory of the older layout to the
// snapshot (see the package documentation).
func upgrade(ctx context.Context, dir string, duck *duckstore.Store, log zerolog.Logger) error {
	tables, logSeq, err := duck.Legacy(ctx)
	if err != nil {
		return err
	}
	recs, legacyLog, err := walstore.ReadLegacy(dir, logSeq)
	if err != nil {
		return err
	}
	if tables == nil && !legacyLog {
		return nil // a new directory, or one upgraded already
	}
	if !walstore.HasSnapshot(dir) {
		st, err := replayLegacy(ctx, tables, recs)
		if err != nil {
			return err
		}
		if err := walstore.WriteSnapshot(dir, st); err != nil {
			return err
		}
		log.Info().Int64("revision", int64(st.Revision)).Int("principals", len(st.Principals)).
			Int("securables", len(st.Securables)).Int("grants", len(st.Grants)).Int("log_records", len(recs)).
			Msg("upgrade: the catalog moved from the DuckDB tables to catalog.snapshot")
	}
	mark, err := walstore.SnapshotRevision(dir)
	if err != nil {
		return err
	}
	var events []catalog.AuditEvent
	last := logSeq
	for _, r := range recs {
		events = append(events, r.Audit...)
		last = r.Seq
	}
	if err := duck.FinishUpgrade(ctx, events, last, mark); err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	if legacyLog {
		if err := walstore.RemoveLegacy(dir); err != nil {
			return err
		}
	}
	log.Info().Int("audit_events", len(events)).Msg("upgrade: the event stream holds the audit of the catalog changes so far")
	return nil
}

// replayLegacy returns the catalog of the tables (nil: none) plus the
// catalog rows of the log records not applied to them.
func replayLegacy(ctx context.Context, tables *catalog.State, recs []walstore.LegacyRecord) (*catalog.State, error) {
	rows := memstore.New()
	err := rows.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		if tables != nil {
			for _, p := range tables.Principals {
				if err := tx.PutPrincipal(ctx, p); err != nil {
					return err
				}
			}
			for _, m := range tables.Memberships {
				if err := tx.AddMembership(ctx, m); err != nil {
					return err
				}
			}
			for _, s := range tables.Securables {
				if err := tx.PutSecurable(ctx, s); err != nil {
					return err
				}
			}
			for _, g := range tables.Grants {
				if err := tx.AddGrant(ctx, g); err != nil {
					return err
				}
			}
			if err := tx.SetMeta(ctx, catalog.Meta{Revision: tables.Revision, NextID: tables.NextID}); err != nil {
				return err
			}
		}
		for _, r := range recs {
			for i := range r.Ops {
				if err := r.Ops[i].Apply(ctx, tx); err != nil {
					return fmt.Errorf("upgrade: catalog log record %d: %w", r.Seq, err)
				}
			}
			if r.Meta != nil {
				if err := tx.SetMeta(ctx, catalog.Meta{Revision: r.Meta.Revision, NextID: r.Meta.NextID}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return catalog.ReadState(ctx, rows)
}
