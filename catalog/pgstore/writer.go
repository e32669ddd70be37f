package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// WriterLease is the lease of the writer replica, the one the others
// forward their catalog statements to (catalog.Options.Remote): a row in
// mandate_writer_lease with the holder's id, the address it serves the
// forwarded statements on and an expiry in the database's clock. A holder
// renews it (Hold) more often than its time to live; when it stops (it
// died, or lost the database), the lease expires and the next replica to
// try takes it. Exclusivity is not needed for correctness: the store
// serializes every append, whoever sends it.
type WriterLease struct {
	s          *Store
	id, addr   string
	ttlSeconds float64
}

// WriterLease returns this replica's lease handle: id names the replica
// (unique per process), addr is where it serves forwarded statements while
// it holds the lease, ttl how long a lease lasts after its last renewal.
func (s *Store) WriterLease(id, addr string, ttl time.Duration) *WriterLease {
	return &WriterLease{s: s, id: id, addr: addr, ttlSeconds: ttl.Seconds()}
}

// holdWriter takes the lease when it is free or renews it when this
// replica holds it, in one statement that also returns the holder: the
// updated row, or else the current one (the statement's snapshot: the row
// as it was).
const holdWriter = `WITH taken AS (
	INSERT INTO mandate_writer_lease AS l (id, holder, addr, expires_at)
	VALUES (TRUE, $1, $2, now() + make_interval(secs => $3))
	ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, addr = EXCLUDED.addr, expires_at = EXCLUDED.expires_at
	WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
	RETURNING holder, addr)
SELECT holder, addr FROM taken
UNION ALL
SELECT holder, addr FROM mandate_writer_lease WHERE NOT EXISTS (SELECT FROM taken) AND expires_at >= now()`

// Hold takes or renews the lease (one round trip) and returns whether this
// replica holds it, and the holder's address ("" when nobody holds it). A
// lease handle without an address never takes the lease: it reads who
// holds it.
func (l *WriterLease) Hold(ctx context.Context) (held bool, addr string, err error) {
	if err := l.s.check(ctx); err != nil {
		return false, "", err
	}
	var holder string
	if l.addr == "" {
		err = l.s.pool.QueryRow(ctx, `SELECT holder, addr FROM mandate_writer_lease WHERE expires_at >= now()`).Scan(&holder, &addr)
	} else {
		err = l.s.pool.QueryRow(ctx, holdWriter, l.id, l.addr, l.ttlSeconds).Scan(&holder, &addr)
	}
	if err == pgx.ErrNoRows {
		return false, "", nil
	}
	if err != nil {
		return false, "", translate(ctx, "hold the writer lease", err)
	}
	return holder == l.id, addr, nil
}

// Release gives the lease up at once if this replica holds it (a replica
// that stops), so that another takes it at its next try.
func (l *WriterLease) Release(ctx context.Context) error {
	if err := l.s.check(ctx); err != nil {
		return err
	}
	_, err := l.s.pool.Exec(ctx, `DELETE FROM mandate_writer_lease WHERE holder = $1`, l.id)
	return translate(ctx, "release the writer lease", err)
}
