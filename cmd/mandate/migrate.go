package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/embedded"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/devidp"
	"github.com/mandatehq/mandate/gateway/oauthconnect"
	"github.com/mandatehq/mandate/gateway/upstream"
)

// migrateBatch is how many audit events one append to the target carries.
const migrateBatch = 10_000

// migrated is what a migration copied (printed, and checked by tests).
type migrated struct {
	revision                           catalog.Revision
	principals, securables, privileges int
	keys                               []string
	grants                             int // per-user OAuth grants
	events                             int
}

// runMigrate implements `mandate migrate --from DIR --to postgres://...`:
// it copies an embedded installation (the catalog, its keys and per-user
// OAuth grants, its audit events) into an empty PostgreSQL database, for
// `mandate serve --store postgres://...` replicas to run on.
//
// The source must not be in use (the data directory's lock: stop mandate
// serve first). The target must hold no catalog; a target that holds a
// catalog (a finished migration, or replicas already started on it) is
// refused, and so is one that holds audit events but no catalog (a
// migration interrupted before its last step: drop and recreate the
// database, then run again). The steps: keys and grants, audit events,
// then the catalog as one snapshot plus the head revision, in one
// transaction, which is what makes the target a Mandate catalog; revisions
// continue from the source's.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", args, stdout, stderr)
	from := fs.String("from", "./mandate-data", "data directory of the embedded installation to copy (mandate serve must not be running on it)")
	to := fs.String("to", "", "PostgreSQL URL of the empty target database, postgres://user@host/db (required)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mandate migrate --from DIR --to postgres://user@host/db

Copies an embedded installation into PostgreSQL for mandate serve --store
postgres://...: the catalog (principals, securables with their sealed secrets,
grants, access tokens, policies, limits and budgets) as a snapshot at its
revision, the signing keys, development IdP keys, node token and per-user
OAuth grants, and the audit events. The target must hold no catalog. Stop
mandate serve on DIR first. The secrets stay sealed with the installation's
master key: every replica needs it as MANDATE_MASTER_KEY.

Flags:
`)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s\n      %s%s\n", f.Name, f.Usage, defaultNote(f))
		})
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	sc := storeConfig{store: *to}
	if _, err := sc.postgresURL(); err != nil || *to == "" {
		return errors.New("--to must be a postgres://user@host/db URL")
	}
	res, err := migrate(ctx, *from, *to)
	if err != nil {
		return err
	}
	keyFrom := "the content of " + filepath.Join(*from, "master.key")
	if strings.TrimSpace(os.Getenv("MANDATE_MASTER_KEY")) != "" {
		keyFrom = "the MANDATE_MASTER_KEY used here"
	}
	fmt.Fprintf(stdout, `Migrated %s to %s:
  catalog:       revision %d (%d principals, %d securables, %d grants)
  keys:          %d (%s)
  OAuth grants:  %d per-user grants
  audit events:  %d
Start every replica with --store %s and MANDATE_MASTER_KEY set to %s.
`, *from, sc.redacted(), res.revision, res.principals, res.securables, res.privileges,
		len(res.keys), strings.Join(res.keys, ", "), res.grants, res.events, sc.redacted(), keyFrom)
	return nil
}

func migrate(ctx context.Context, from, to string) (*migrated, error) {
	if _, err := os.Stat(filepath.Join(from, duckstore.FileName)); err != nil {
		return nil, fmt.Errorf("%s is not the data directory of an embedded installation (no %s)", from, duckstore.FileName)
	}
	key, err := masterKey(from, false)
	if err != nil {
		return nil, err
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		return nil, err
	}
	nop := zerolog.Nop()
	src, err := embedded.Open(ctx, from, embedded.Options{Logger: nop})
	if err != nil {
		if catalog.IsCode(err, catalog.CodeUnavailable) {
			return nil, fmt.Errorf("the data directory %s is in use (stop mandate serve on it first): %w", from, err)
		}
		return nil, err
	}
	defer src.Close()
	snap, changes, err := src.Catalog.Load(ctx)
	if err != nil {
		return nil, err
	}
	state, err := catalog.Replay(snap, changes)
	if err != nil {
		return nil, err
	}
	if state.Revision == 0 {
		return nil, fmt.Errorf("%s holds no catalog yet: nothing to migrate", from)
	}
	// The source's secrets open with this key (a wrong MANDATE_MASTER_KEY
	// would make a target whose secrets nobody can read).
	if err := checkSealed(state, kr); err != nil {
		return nil, err
	}

	pg, err := pgstore.Open(ctx, to, pgstore.Options{Logger: nop})
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	if head, err := pg.Head(ctx); err != nil {
		return nil, err
	} else if head != 0 {
		return nil, fmt.Errorf("the target database already holds a catalog (revision %d): mandate migrate copies into an empty database only (a second run, or replicas already started on it)", head)
	}
	ev, err := pgstore.OpenEvents(ctx, to, pgstore.EventOptions{Logger: nop, SpoolID: "mandate-migrate"})
	if err != nil {
		return nil, err
	}
	defer ev.Close()
	if rows, err := ev.ListAudit(ctx, time.Time{}, 1); err != nil {
		return nil, err
	} else if len(rows) > 0 {
		return nil, errors.New("the target database holds audit events but no catalog: an earlier migration was interrupted; drop and recreate the database, then run mandate migrate again")
	}

	res := &migrated{revision: state.Revision, principals: len(state.Principals), securables: len(state.Securables), privileges: len(state.Grants)}
	keys := keystore.Sealed(pg.Keys(), kr)
	if res.keys, res.grants, err = copyGatewayKeys(ctx, from, pg.Keys()); err != nil {
		return nil, err
	}
	names, grants, err := copyKeys(ctx, from, keys, res.keys...)
	if err != nil {
		return nil, err
	}
	res.keys, res.grants = append(res.keys, names...), res.grants+grants
	if res.events, err = copyAudit(ctx, src.Events, ev, migrateBatch); err != nil {
		return nil, fmt.Errorf("copying the audit events: %w", err)
	}
	// Every catalog change up to the revision has its audit among them.
	if err := ev.AppendChangeAudit(ctx, state.Revision, nil); err != nil {
		return nil, err
	}
	if err := pg.Import(ctx, state); err != nil {
		return nil, err
	}
	return res, nil
}

// checkSealed opens the sealed secrets of the catalog with kr: the key
// that sealed the source's secrets must be the one the replicas will use.
func checkSealed(st *catalog.State, kr *catalog.Keyring) error {
	for _, sec := range st.Securables {
		if sec.Secrets == nil {
			continue
		}
		if _, err := kr.OpenMap(sec.Secrets, catalog.SecretsAAD(sec.ID)); err != nil {
			return fmt.Errorf("the secrets of %s do not open with this master key (MANDATE_MASTER_KEY must be the installation's key, or unset to use its master.key)", sec.Name)
		}
	}
	return nil
}

// copyGatewayKeys copies DATA_DIR/keys (the gateway's mandate_jwt signing
// keys and per-user OAuth grants, each blob as sealed with the master key)
// into raw, the target's store under its sealing, blob for blob; sign-ins
// in progress are left behind. A blob the target holds already must be
// the same.
func copyGatewayKeys(ctx context.Context, dir string, raw keystore.Store) (names []string, grants int, err error) {
	bs, err := keystore.Dir(filepath.Join(dir, gatewayKeysDir)).List(ctx, "")
	if err != nil {
		return nil, 0, err
	}
	for _, b := range bs {
		if !nodeKeyNames(b.Name) || strings.HasPrefix(b.Name, "oauth-") {
			continue
		}
		got, err := raw.Create(ctx, b.Name, b.Data)
		if err != nil {
			return nil, 0, err
		}
		if !bytes.Equal(got.Data, b.Data) {
			return nil, 0, fmt.Errorf("the target database already holds a different %s", b.Name)
		}
		if strings.HasPrefix(b.Name, "user-token:") {
			grants++
		} else {
			names = append(names, b.Name)
		}
	}
	return names, grants, nil
}

// copyKeys copies the key files of a data directory (mandate_jwt signing
// keys of an installation that has not moved them to DATA_DIR/keys yet,
// the development IdP's key and secrets, the node token) and its per-user
// OAuth grants of the same age into keys, except the names in skip
// (copied from DATA_DIR/keys). A blob the target holds already must be
// the same.
func copyKeys(ctx context.Context, dir string, keys keystore.Store, skip ...string) (names []string, grants int, err error) {
	src := keystore.Dir(dir)
	for _, name := range []string{upstream.KeyFileName, devidp.SigningKeyFile, devidp.StateFile, api.TokenFile} {
		if slices.Contains(skip, name) {
			continue
		}
		b, err := src.Get(ctx, name)
		if errors.Is(err, keystore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		got, err := keys.Create(ctx, name, b.Data)
		if err != nil {
			return nil, 0, err
		}
		if !bytes.Equal(got.Data, b.Data) {
			return nil, 0, fmt.Errorf("the target database already holds a different %s", name)
		}
		names = append(names, name)
	}
	path := filepath.Join(dir, userTokensFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return names, 0, nil
	}
	file, err := oauthconnect.NewFileTokenStore(path)
	if err != nil {
		return nil, 0, err
	}
	all, err := file.List(ctx)
	if err != nil {
		return nil, 0, err
	}
	shared := oauthconnect.NewSharedTokenStore(keys)
	for _, s := range all {
		t, err := file.Get(ctx, s.User, s.Connection)
		if err != nil {
			return nil, 0, err
		}
		if err := shared.Put(ctx, t); err != nil {
			return nil, 0, err
		}
		grants++
	}
	return names, grants, nil
}

// copyAudit appends every event of src to dst, oldest first, in batches.
// ListAudit pages by time (since is inclusive, the events of one instant in
// a stable order): the events of the last instant already copied come
// first on the next page and are skipped by count.
func copyAudit(ctx context.Context, src catalog.AuditReader, dst catalog.AuditWriter, batch int) (int, error) {
	var since time.Time
	atSince, total := 0, 0 // atSince: events at since already copied
	for {
		page, err := src.ListAudit(ctx, since, batch)
		if err != nil {
			return total, err
		}
		skip := 0
		for skip < len(page) && skip < atSince && page[skip].Time.Equal(since) {
			skip++
		}
		out := page[skip:]
		if len(out) == 0 {
			if len(page) == batch { // one instant fills the page: read more at once
				batch *= 2
				continue
			}
			return total, nil
		}
		if err := dst.AppendAudit(ctx, out...); err != nil {
			return total, err
		}
		total += len(out)
		if last := out[len(out)-1].Time; last.Equal(since) {
			atSince += len(out)
		} else {
			since, atSince = last, 0
			for _, e := range out {
				if e.Time.Equal(last) {
					atSince++
				}
			}
		}
		if len(page) < batch {
			return total, nil
		}
	}
}
