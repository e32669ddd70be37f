package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
)

// runRotateQueryPassword implements `mandate rotate-query-password --store
// postgres://...`: it gives the LOGIN role the replicas' system-table
// queries run as (catalog/pgquery) a new password, sealed in the shared
// key store with MANDATE_MASTER_KEY, as serve does. Replicas keep
// serving: each new connection of theirs reads the password from the key
// store (one made during the rotation waits for it), connections already
// open stay until they are closed.
func runRotateQueryPassword(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rotate-query-password", args, stdout, stderr)
	var sc storeConfig
	fs.StringVar(&sc.store, "store", "", "the replicas' PostgreSQL URL, postgres://user@host/db, as mandate serve --store has it (the store's user: it alters the query role) (required)")
	fs.StringVar(&sc.queryURL, "store-query-url", "", "as mandate serve --store-query-url: a role an administrator created, whose password is theirs to rotate (then this command refuses)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mandate rotate-query-password --store postgres://user@host/db

Gives the role the system tables' SELECTs run as on PostgreSQL
(mandate_query_<hash of the database name>) a new random password: ALTER ROLE
with a SCRAM verifier, then the password sealed with MANDATE_MASTER_KEY in the
replicas' key store, under the key store's lock of its name. Running replicas
need no restart: their new connections read the new password (one made while
the rotation runs waits for it); connections already open stay until closed.
Needs MANDATE_MASTER_KEY, the replicas' key.

Flags (and environment variables):
`)
		printEnvFlags(fs)
	}
	if err := parseEnvArgs(fs, args); err != nil {
		return err
	}
	if sc.store == "" || sc.store == "embedded" {
		return errors.New("--store (MANDATE_STORE) must be the replicas' postgres://user@host/db URL: an embedded installation has no query role")
	}
	sc.maxStaleness = catalog.DefaultMaxStaleness
	if err := sc.validate(); err != nil { // the URLs, and MANDATE_MASTER_KEY set
		return err
	}
	url := sc.store
	key, err := decodeKey(strings.TrimSpace(os.Getenv("MANDATE_MASTER_KEY")), "MANDATE_MASTER_KEY")
	if err != nil {
		return err
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		return err
	}
	// Only a database replicas run on: opening the store would create the
	// schema of a new one.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", sc.redacted(), err)
	}
	var installed bool
	err = conn.QueryRow(ctx, "SELECT to_regclass('mandate_keys') IS NOT NULL").Scan(&installed)
	_ = conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("reading %s: %w", sc.redacted(), err)
	}
	if !installed {
		return fmt.Errorf("%s holds no Mandate installation (no mandate_keys): start mandate serve --store on it first", sc.redacted())
	}
	pg, err := pgstore.Open(ctx, url, pgstore.Options{Logger: zerolog.Nop(), MaxConns: 2})
	if err != nil {
		return err
	}
	defer pg.Close()
	// Open checks the key store's password against the master key (a
	// sealed blob another key cannot open) and the role as serve does.
	qe, err := pgquery.Open(ctx, url, pgquery.Options{Schema: pgstore.ViewsSchema, Keys: keystore.Sealed(pg.Keys(), kr),
		Login: sc.queryURL, MaxConns: 1, Logger: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer qe.Close()
	if err := qe.RotatePassword(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Rotated the password of the query role %s on %s: new connections of every replica use it; connections already open stay until closed.\n",
		pgx.Identifier{qe.Role()}.Sanitize(), sc.redacted())
	return nil
}
