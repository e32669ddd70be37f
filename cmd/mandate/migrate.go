package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	// resumed: audit events an interrupted run had copied; done: the
	// target held this installation's catalog already (nothing copied).
	resumed int64
	done    bool
}

// runMigrate implements `mandate migrate --from DIR --to postgres://...`:
// it copies an embedded installation (the catalog, its keys and per-user
// OAuth grants, its audit events) into an empty PostgreSQL database, for
// `mandate serve --store postgres://...` replicas to run on.
//
// The source must not be in use (the data directory's lock: stop mandate
// serve first). The steps: keys and grants, audit events, then the catalog
// as one snapshot plus the head revision, in one transaction, which is
// what makes the target a Mandate catalog; revisions continue from the
// source's. Progress is recorded in the target (migrateProgress; each
// audit batch stored with the count copied so far), so an interrupted run
// continues when run again: keys are copied again (identical blobs change
// nothing), the audit events from the first batch not stored. A target
// whose catalog is this installation's has nothing left to copy; a target
// holding another installation's catalog or interrupted migration, or
// audit events of no migration, is refused and left as it is.
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
OAuth grants, and the audit events. The target must be empty, or hold an
interrupted migration of the same installation, which continues where it
stopped (a finished one: nothing left to do). Stop mandate serve on DIR first. The secrets stay sealed with the installation's
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
	res, err := migrate(ctx, *from, *to, migrateOptions{})
	if err != nil {
		return err
	}
	if res.done {
		fmt.Fprintf(stdout, "%s already holds the catalog of %s (revision %d): nothing left to migrate.\n", sc.redacted(), *from, res.revision)
		return nil
	}
	if res.resumed > 0 {
		fmt.Fprintf(stdout, "Continued an interrupted migration: %d audit events were copied already.\n", res.resumed)
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

// migrateOptions are knobs of migrate for tests: batch is the audit
// events per append (default migrateBatch); interrupt, when set, is called
// after each audit batch is stored ("stored") and after the progress
// record is updated ("recorded"), and an error it returns ends the
// migration there, as a crash would.
type migrateOptions struct {
	batch     int
	interrupt func(step string, copied int64) error
}

func migrate(ctx context.Context, from, to string, o migrateOptions) (*migrated, error) {
	if o.batch <= 0 {
		o.batch = migrateBatch
	}
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

	install := installationID(state)
	res := &migrated{revision: state.Revision, principals: len(state.Principals), securables: len(state.Securables), privileges: len(state.Grants)}

	pg, err := pgstore.Open(ctx, to, pgstore.Options{Logger: nop})
	if err != nil {
		return nil, err
	}
	defer pg.Close()
	// One migration at a time into a target.
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	unlock, err := pg.Keys().Lock(lctx, migrateRecord)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("another mandate migrate is running on the target database (%w)", err)
	}
	defer unlock()
	if head, err := pg.Head(ctx); err != nil {
		return nil, err
	} else if head != 0 {
		// A finished migration of this installation (or replicas already
		// running on it) has nothing left to copy; another's is refused.
		snap, changes, err := pg.Load(ctx)
		if err != nil {
			return nil, err
		}
		there, err := catalog.Replay(snap, changes)
		if err != nil {
			return nil, err
		}
		if installationID(there) != install {
			return nil, fmt.Errorf("the target database already holds the catalog of another installation (revision %d): mandate migrate copies into an empty database, or finishes its own interrupted copy", head)
		}
		res.done, res.revision = true, head
		return res, nil
	}
	ev, err := pgstore.OpenEvents(ctx, to, pgstore.EventOptions{Logger: nop, SpoolID: migrateSpool})
	if err != nil {
		return nil, err
	}
	defer ev.Close()
	rec, err := readMigrateRecord(ctx, pg.Keys())
	if err != nil {
		return nil, err
	}
	switch {
	case rec.Installation != "" && rec.Installation != install:
		return nil, errors.New("the target database holds an interrupted migration of another installation: migrate that one again, or drop and recreate the database")
	case rec.Installation == "":
		if rows, err := ev.ListAudit(ctx, time.Time{}, 1); err != nil {
			return nil, err
		} else if len(rows) > 0 {
			return nil, errors.New("the target database holds audit events but no catalog, and no migration of this installation: drop and recreate the database, then run mandate migrate again")
		}
		rec.Installation = install
		if err := rec.write(ctx, pg.Keys()); err != nil {
			return nil, err
		}
	}

	// Keys and grants: a blob the target holds already must be the same
	// (a repeated copy changes nothing).
	keys := keystore.Sealed(pg.Keys(), kr)
	if res.keys, res.grants, err = copyGatewayKeys(ctx, from, pg.Keys()); err != nil {
		return nil, err
	}
	names, grants, err := copyKeys(ctx, from, keys, res.keys...)
	if err != nil {
		return nil, err
	}
	res.keys, res.grants = append(res.keys, names...), res.grants+grants

	// Audit events, batch by batch: each batch and the count copied so far
	// in one transaction (the target's spool position), then the page
	// position in the progress record. A batch stored without its record
	// (interrupted in between) is recognized by the count and skipped.
	pos := rec.Audit
	stored, err := ev.LogSeq(ctx)
	if err != nil {
		return nil, err
	}
	if stored != pos.Copied {
		if pos, err = skipStoredBatch(ctx, src.Events, o.batch, pos, stored); err != nil {
			return nil, err
		}
		rec.Audit = pos
		if err := rec.write(ctx, pg.Keys()); err != nil {
			return nil, err
		}
	}
	res.resumed = pos.Copied
	pos, err = copyAudit(ctx, src.Events, o.batch, pos, func(ctx context.Context, batch []catalog.AuditEvent, next auditPos) error {
		if err := ev.ApplyLog(ctx, next.Copied, batch, 0); err != nil {
			return err
		}
		if o.interrupt != nil {
			if err := o.interrupt("stored", next.Copied); err != nil {
				return err
			}
		}
		rec.Audit = next
		if err := rec.write(ctx, pg.Keys()); err != nil {
			return err
		}
		if o.interrupt != nil {
			return o.interrupt("recorded", next.Copied)
		}
		return nil
	})
	res.events = int(pos.Copied)
	if err != nil {
		return res, fmt.Errorf("copying the audit events (%d copied; run mandate migrate again to continue): %w", pos.Copied, err)
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

// auditPos is how far a migration copied the source's audit events, in
// ListAudit's order: Copied events in all, of which the last AtSince have
// the time Since.
type auditPos struct {
	Copied  int64     `json:"copied"`
	Since   time.Time `json:"since"`
	AtSince int       `json:"at_since"`
}

// copyAudit passes the events of src after pos to apply, oldest first, in
// batches, each with the position after it, and returns the position
// reached. ListAudit pages by time (since is inclusive, the events of one
// instant in a stable order): the events of the last instant already
// copied come first on the next page and are skipped by count.
func copyAudit(ctx context.Context, src catalog.AuditReader, batch int, pos auditPos,
	apply func(context.Context, []catalog.AuditEvent, auditPos) error) (auditPos, error) {
	for {
		page, err := src.ListAudit(ctx, pos.Since, batch)
		if err != nil {
			return pos, err
		}
		skip := 0
		for skip < len(page) && skip < pos.AtSince && page[skip].Time.Equal(pos.Since) {
			skip++
		}
		out := page[skip:]
		if len(out) == 0 {
			if len(page) == batch { // one instant fills the page: read more at once
				batch *= 2
				continue
			}
			return pos, nil
		}
		next := pos
		next.Copied += int64(len(out))
		if last := out[len(out)-1].Time; last.Equal(pos.Since) {
			next.AtSince += len(out)
		} else {
			next.Since, next.AtSince = last, 0
			for _, e := range out {
				if e.Time.Equal(last) {
					next.AtSince++
				}
			}
		}
		if err := apply(ctx, out, next); err != nil {
			return pos, err
		}
		pos = next
		if len(page) < batch {
			return pos, nil
		}
	}
}

// errStop ends a copyAudit after its first batch.
var errStop = errors.New("stop")

// skipStoredBatch moves pos past the batch an interrupted migration stored
// without recording its position (the target's count, stored, is one
// batch ahead of pos): the same batch, read again from the unchanged
// source, must have exactly that many events.
func skipStoredBatch(ctx context.Context, src catalog.AuditReader, batch int, pos auditPos, stored int64) (auditPos, error) {
	next := pos
	_, err := copyAudit(ctx, src, batch, pos, func(_ context.Context, _ []catalog.AuditEvent, p auditPos) error {
		next = p
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return pos, err
	}
	if next.Copied != stored {
		return pos, fmt.Errorf("the target database holds %d audit events of this migration and its progress record %d: it does not continue the copy of this source; drop and recreate the database, then run mandate migrate again", stored, pos.Copied)
	}
	return next, nil
}

// migrateRecord names the progress record of a migration in the target's
// key store (never lent to gateway nodes); migrateSpool is the target
// event stream's spool that counts the audit events copied, stored with
// each batch.
const (
	migrateRecord = "mandate-migrate"
	migrateSpool  = "mandate-migrate"
)

// migrateProgress is the progress record: the installation being copied
// (installationID) and how far its audit events are.
type migrateProgress struct {
	Installation string   `json:"installation"`
	Audit        auditPos `json:"audit"`
	version      int64
}

func readMigrateRecord(ctx context.Context, ks keystore.Store) (*migrateProgress, error) {
	b, err := ks.Get(ctx, migrateRecord)
	if errors.Is(err, keystore.ErrNotFound) {
		return &migrateProgress{}, nil
	}
	if err != nil {
		return nil, err
	}
	p := &migrateProgress{version: b.Version}
	if err := json.Unmarshal(b.Data, p); err != nil || p.Installation == "" {
		return nil, fmt.Errorf("the target database's migration record is corrupt (%v): drop and recreate the database", err)
	}
	return p, nil
}

func (p *migrateProgress) write(ctx context.Context, ks keystore.Store) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	b, err := ks.CompareAndSwap(ctx, migrateRecord, p.version, data)
	if err != nil {
		return fmt.Errorf("recording the migration's progress: %w", err)
	}
	p.version = b.Version
	return nil
}

// installationID identifies the installation a catalog belongs to: its
// first principal (the administrator the bootstrap created), by ID and
// creation time, which no later change alters.
func installationID(st *catalog.State) string {
	var first *catalog.Principal
	for i := range st.Principals {
		if p := &st.Principals[i]; first == nil || p.ID < first.ID {
			first = p
		}
	}
	if first == nil {
		return "empty"
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "mandate/installation/v1\x00%d\x00%s", first.ID, first.Created.UTC().Format(time.RFC3339Nano)))
	return hex.EncodeToString(sum[:16])
}
