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
// serializes every append, whoever sends it. With the address, the holder
// publishes the fingerprint of its listener's TLS certificate (cert, ""
// for plain HTTP), which the others pin.
type WriterLease struct {
	s              *Store
	id, addr, cert string
	ttlSeconds     float64
}

// WriterLease returns this replica's lease handle: id names the replica
// (unique per process), addr is where it serves forwarded statements while
// it holds the lease, ttl how long a lease lasts after its last renewal.
func (s *Store) WriterLease(id, addr string, ttl time.Duration) *WriterLease {
	return &WriterLease{s: s, id: id, addr: addr, ttlSeconds: ttl.Seconds()}
}

// WithCert sets the fingerprint of the certificate this replica serves
// forwarded statements with ("sha256:HEX"; "" for plain HTTP), published
// with the lease while it holds it.
func (l *WriterLease) WithCert(cert string) *WriterLease {
	l.cert = cert
	return l
}

// WriterHolder is the holder of the writer lease as Hold read it.
type WriterHolder struct {
	Held bool   // this replica holds it
	Addr string // where the holder serves forwarded statements ("": nobody holds it)
	Cert string // the fingerprint of its certificate ("": plain HTTP, or a holder that predates it)
}

// holdWriter takes the lease when it is free or renews it when this
// replica holds it, in one statement that also returns the holder: the
// updated row, or else the current one (the statement's snapshot: the row
// as it was).
const holdWriter = `WITH taken AS (
	INSERT INTO mandate_writer_lease AS l (id, holder, addr, cert, expires_at)
	VALUES (TRUE, $1, $2, $4, now() + make_interval(secs => $3))
	ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, addr = EXCLUDED.addr, cert = EXCLUDED.cert, expires_at = EXCLUDED.expires_at
	WHERE l.expires_at < now() OR l.holder = EXCLUDED.holder
	RETURNING holder, addr, cert)
SELECT holder, addr, cert FROM taken
UNION ALL
SELECT holder, addr, cert FROM mandate_writer_lease WHERE NOT EXISTS (SELECT FROM taken) AND expires_at >= now()`

// Hold takes or renews the lease (one round trip) and returns whether this
// replica holds it, and the holder's address ("" when nobody holds it). A
// lease handle without an address never takes the lease: it reads who
// holds it.
func (l *WriterLease) Hold(ctx context.Context) (held bool, addr string, err error) {
	h, err := l.HoldCert(ctx)
	return h.Held, h.Addr, err
}

// HoldCert is Hold, with the holder's certificate fingerprint.
func (l *WriterLease) HoldCert(ctx context.Context) (WriterHolder, error) {
	if err := l.s.check(ctx); err != nil {
		return WriterHolder{}, err
	}
	var holder string
	var h WriterHolder
	var err error
	if l.addr == "" {
		err = l.s.pool.QueryRow(ctx, `SELECT holder, addr, cert FROM mandate_writer_lease WHERE expires_at >= now()`).Scan(&holder, &h.Addr, &h.Cert)
	} else {
		err = l.s.pool.QueryRow(ctx, holdWriter, l.id, l.addr, l.ttlSeconds, l.cert).Scan(&holder, &h.Addr, &h.Cert)
	}
	if err == pgx.ErrNoRows {
		return WriterHolder{}, nil
	}
	if err != nil {
		return WriterHolder{}, translate(ctx, "hold the writer lease", err)
	}
	h.Held = holder == l.id
	return h, nil
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
