package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/embedded"
	"github.com/mandatehq/mandate/catalog/pgstore"
)

// storeConfig is where the catalog lives: --store embedded (the data
// directory) or --store postgres://... (shared by replicas).
type storeConfig struct {
	store        string
	maxStaleness time.Duration
	queryURL     string
	// forwardWrites and advertiseAddr: the writer replica (replicawrite.go).
	forwardWrites bool
	advertiseAddr string
}

func (c *storeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.store, "store", "embedded", "where the catalog lives: embedded (the data directory) or a PostgreSQL URL, postgres://user@host/db, that several mandate serve processes share, with the audit events (each spools them in its own --data-dir while the database is unreachable)")
	fs.StringVar(&c.queryURL, "store-query-url", "", "with --store postgres://...: postgres://role:password@host/db of a LOGIN role an administrator created for the system tables' SELECTs, when the store's user may not create it (no CREATEROLE); default: mandate creates its own role, its password sealed in the store")
	fs.BoolVar(&c.forwardWrites, "forward-writes", true, "with --store postgres://...: replicas send their catalog statements (GRANT, REVOKE, ...) to one of them, the writer, whose commits carry every replica's statements; statements whose text holds a secret, and any the writer cannot take, are committed by the replica itself; false: each replica appends its own (set it alike on every replica)")
	fs.StringVar(&c.advertiseAddr, "advertise-addr", "", "with --store postgres://... and --forward-writes: HOST:PORT at which the other replicas reach this replica's --http-addr (default: --http-addr, unless it binds every interface: then this replica forwards its statements but never is the writer)")
	fs.DurationVar(&c.maxStaleness, "max-staleness", catalog.DefaultMaxStaleness, "with --store postgres://...: a replica that could not confirm for this long that it has every committed catalog change denies every authorization (fail closed) until it catches up")
}

func (c *storeConfig) validate() error {
	if c.maxStaleness <= 0 {
		return fmt.Errorf("--max-staleness (%s) must be positive", envName("max-staleness"))
	}
	if c.store == "embedded" {
		if c.queryURL != "" {
			return fmt.Errorf("--store-query-url (%s) needs --store postgres://user@host/db", envName("store-query-url"))
		}
		return nil
	}
	if c.queryURL != "" {
		if u, err := url.Parse(c.queryURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.User == nil || !hasPassword(u) {
			return fmt.Errorf("--store-query-url (%s) must be a postgres://role:password@host/db URL", envName("store-query-url"))
		}
	}
	if _, err := c.postgresURL(); err != nil {
		return err
	}
	if strings.TrimSpace(os.Getenv("MANDATE_MASTER_KEY")) == "" {
		// A key generated into one replica's data directory would leave
		// the secrets it seals unreadable by the others.
		return fmt.Errorf("with --store postgres://... every replica needs the same MANDATE_MASTER_KEY (32 bytes, base64 or hex): it encrypts the connection and provider secrets of the shared catalog")
	}
	return nil
}

// postgresURL returns the PostgreSQL URL of --store, or an error saying
// what --store takes.
func (c *storeConfig) postgresURL() (string, error) {
	u, err := url.Parse(c.store)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return "", fmt.Errorf("--store (%s) must be embedded or a postgres://user@host/db URL", envName("store"))
	}
	return c.store, nil
}

// redacted is --store for logs: without the password.
func (c *storeConfig) redacted() string {
	if c.store == "embedded" {
		return c.store
	}
	return catalog.RedactURL(c.store)
}

// stores are the stores serve runs on.
type stores struct {
	catalog catalog.Store
	events  *auditwal.Log
	duck    *duckstore.Store
	// pg is the PostgreSQL catalog store (--store postgres://...; nil when
	// embedded): pg.Pool() is the connection pool other shared state of
	// the replicas (rate-limit and budget leases) uses.
	pg *pgstore.Store
	// pgEvents is the replicas' shared event stream in PostgreSQL, behind
	// events (this replica's spool); nil when embedded.
	pgEvents *pgstore.Events
	close    func() error
}

// openStores opens the catalog's store and this process's event stream.
func openStores(ctx context.Context, cfg *serveConfig, log zerolog.Logger) (*stores, error) {
	o := embedded.Options{Logger: log, Duck: cfg.limits.storeOptions(duckstore.Options{})}
	o.Events.SyncInterval = cfg.auditSync.syncInterval()
	o.Events.ApplyNice = auditApplyNice
	if cfg.store.store == "embedded" {
		st, err := embedded.Open(ctx, cfg.dataDir, o)
		if err != nil {
			return nil, err
		}
		return &stores{catalog: st.Catalog, events: st.Events, duck: st.Duck, close: st.Close}, nil
	}
	pgURL, err := cfg.store.postgresURL()
	if err != nil {
		return nil, err
	}
	// The catalog and the event stream in PostgreSQL, shared by the
	// replicas. The pool also serves the rate-limit and budget leases
	// (gateway/limits/pglimits): room for both. The event stream has a
	// pool of its own (its flood never holds up a catalog write) behind
	// this replica's spool (catalog/auditwal in DATA_DIR/pg-audit): an
	// answered call's events are durable locally and drain into
	// PostgreSQL, also after the database was unreachable for a while.
	pg, err := pgstore.Open(ctx, pgURL, pgstore.Options{Logger: log, MaxConns: 12})
	if err != nil {
		return nil, err
	}
	// The embedded DuckDB stays for the system tables' query engine.
	ev, err := embedded.OpenEvents(ctx, cfg.dataDir, o)
	if err != nil {
		pg.Close()
		return nil, err
	}
	pgEvents, spool, err := openPGEvents(ctx, cfg, pgURL, log)
	if err != nil {
		pg.Close()
		ev.Close()
		return nil, err
	}
	return &stores{catalog: pg, events: spool, duck: ev.Duck, pg: pg, pgEvents: pgEvents, close: func() error {
		return errors.Join(spool.Close(), pgEvents.Close(), pg.Close(), ev.Close())
	}}, nil
}

// pgSpoolDir is the directory of a replica's audit spool in its data
// directory (--store postgres://...).
const pgSpoolDir = "pg-audit"

// openPGEvents opens the PostgreSQL event stream behind this replica's
// spool. The spool is named by a random id kept beside it, so that the
// database records how far each replica's spool was applied.
func openPGEvents(ctx context.Context, cfg *serveConfig, pgURL string, log zerolog.Logger) (*pgstore.Events, *auditwal.Log, error) {
	dir := filepath.Join(cfg.dataDir, pgSpoolDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating the audit spool directory: %w", err)
	}
	idPath := filepath.Join(dir, "spool-id")
	id, err := os.ReadFile(idPath)
	if errors.Is(err, os.ErrNotExist) {
		id = []byte(uuid.NewString())
		if err := writeSecretFile(idPath, string(id)+"\n"); err != nil {
			return nil, nil, fmt.Errorf("writing the audit spool id: %w", err)
		}
	} else if err != nil {
		return nil, nil, fmt.Errorf("reading the audit spool id: %w", err)
	}
	retention := cfg.auditRetention
	if retention <= 0 {
		retention = 100 * 365 * 24 * time.Hour // kept forever: partitions on demand for any day
	}
	pe, err := pgstore.OpenEvents(ctx, pgURL, pgstore.EventOptions{Logger: log, SpoolID: strings.TrimSpace(string(id)), Retention: retention})
	if err != nil {
		return nil, nil, err
	}
	spool, err := auditwal.Open(ctx, dir, pe, auditwal.Options{Logger: log, SyncInterval: cfg.auditSync.syncInterval(),
		// Other replicas see this one's events once applied: keep that
		// within a second (the embedded store's default is 5 s).
		ApplyInterval: time.Second})
	if err != nil {
		pe.Close()
		return nil, nil, err
	}
	return pe, spool, nil
}

func hasPassword(u *url.URL) bool {
	_, ok := u.User.Password()
	return ok
}
