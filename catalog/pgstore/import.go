package pgstore

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/mandatehq/mandate/catalog"
)

// Import makes st the catalog of a database that holds none (mandate
// migrate): in one transaction the head moves from 0 to st.Revision and
// st is stored as the snapshot of that revision, so that the revisions of
// the catalog st came from continue here. A database whose head is not 0
// (a catalog was bootstrapped or imported) is refused with
// CodeAlreadyExists and left as it is; concurrent appenders (a replica
// bootstrapping at the same moment) queue on the head row and then lose
// with CodeConflict.
func (s *Store) Import(ctx context.Context, st *catalog.State) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if st.Revision <= 0 {
		return catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: nothing to import (revision %d)", st.Revision)
	}
	body, err := json.Marshal(st.Normalized())
	if err != nil {
		return catalog.Internal(err, "encoding the catalog snapshot")
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return translate(ctx, "import the catalog", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var head int64
	if err := tx.QueryRow(ctx, `SELECT revision FROM mandate_catalog_head WHERE id = 1 FOR UPDATE`).Scan(&head); err != nil {
		return translate(ctx, "import the catalog", err)
	}
	if head != 0 {
		return catalog.Errorf(catalog.CodeAlreadyExists, "the database already holds a catalog (revision %d)", head)
	}
	if _, err := tx.Exec(ctx, `UPDATE mandate_catalog_head SET revision = $1 WHERE id = 1`, int64(st.Revision)); err != nil {
		return translate(ctx, "import the catalog", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO mandate_catalog_snapshots (revision, state) VALUES ($1, $2)`, int64(st.Revision), body); err != nil {
		return translate(ctx, "import the catalog", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, strconv.FormatInt(int64(st.Revision), 10)); err != nil {
		return translate(ctx, "import the catalog", err)
	}
	return translate(ctx, "import the catalog", tx.Commit(ctx))
}
