package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

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
}

func (c *storeConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.store, "store", "embedded", "where the catalog lives: embedded (the data directory) or a PostgreSQL URL, postgres://user@host/db, that several mandate serve processes share (each keeps its audit events in its own --data-dir)")
	fs.DurationVar(&c.maxStaleness, "max-staleness", catalog.DefaultMaxStaleness, "with --store postgres://...: a replica that could not confirm for this long that it has every committed catalog change denies every authorization (fail closed) until it catches up")
}

func (c *storeConfig) validate() error {
	if c.maxStaleness <= 0 {
		return fmt.Errorf("--max-staleness (%s) must be positive", envName("max-staleness"))
	}
	if c.store == "embedded" {
		return nil
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
	pg    *pgstore.Store
	close func() error
}

// openStores opens the catalog's store and this process's event stream.
func openStores(ctx context.Context, cfg *serveConfig, log zerolog.Logger) (*stores, error) {
	o := embedded.Options{Logger: log, Duck: cfg.limits.storeOptions(duckstore.Options{})}
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
	// The catalog in PostgreSQL; the audit events in this replica's data
	// directory (DuckDB), every replica holding the audit of every catalog
	// change and of the calls it served.
	pg, err := pgstore.Open(ctx, pgURL, pgstore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	ev, err := embedded.OpenEvents(ctx, cfg.dataDir, o)
	if err != nil {
		pg.Close()
		return nil, err
	}
	return &stores{catalog: pg, events: ev.Events, duck: ev.Duck, pg: pg, close: func() error {
		return errors.Join(pg.Close(), ev.Close())
	}}, nil
}
