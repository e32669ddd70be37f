package pgstore

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// keyLockClass is the first key of the advisory locks Keys.Lock takes
// (the second is hashtext(name)).
const keyLockClass = 0x6d6b6579 // "mkey"

// Keys is the keystore.Store of the catalog's database (table
// mandate_keys), shared by every replica: wrap it in keystore.Sealed.
type Keys struct {
	pool *pgxpool.Pool
}

var _ keystore.Store = (*Keys)(nil)

// Keys returns the key store of s's database (it uses s's pool).
func (s *Store) Keys() *Keys { return &Keys{pool: s.pool} }

func (k *Keys) Get(ctx context.Context, name string) (keystore.Blob, error) {
	if err := keystore.CheckName(name); err != nil {
		return keystore.Blob{}, err
	}
	b := keystore.Blob{Name: name}
	err := k.pool.QueryRow(ctx, `SELECT data, version FROM mandate_keys WHERE name = $1`, name).Scan(&b.Data, &b.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return keystore.Blob{}, keystore.ErrNotFound
	}
	if err != nil {
		return keystore.Blob{}, translate(ctx, "read key "+name, err)
	}
	return b, nil
}

func (k *Keys) Create(ctx context.Context, name string, data []byte) (keystore.Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return keystore.Blob{}, err
	}
	// ON CONFLICT DO NOTHING waits for a concurrent creator's commit; the
	// next statement sees whichever blob won.
	for range 3 {
		if _, err := k.pool.Exec(ctx, `INSERT INTO mandate_keys (name, data, version) VALUES ($1, $2, 1)
			ON CONFLICT (name) DO NOTHING`, name, data); err != nil {
			return keystore.Blob{}, translate(ctx, "create key "+name, err)
		}
		b, err := k.Get(ctx, name)
		if !errors.Is(err, keystore.ErrNotFound) { // deleted in between: again
			return b, err
		}
	}
	return keystore.Blob{}, translate(ctx, "create key "+name, errors.New("the key keeps disappearing"))
}

func (k *Keys) CompareAndSwap(ctx context.Context, name string, version int64, data []byte) (keystore.Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return keystore.Blob{}, err
	}
	var tag string
	var err error
	if version == 0 {
		var ct interface{ RowsAffected() int64 }
		ct, err = k.pool.Exec(ctx, `INSERT INTO mandate_keys (name, data, version) VALUES ($1, $2, 1)
			ON CONFLICT (name) DO NOTHING`, name, data)
		if err == nil && ct.RowsAffected() == 0 {
			return keystore.Blob{}, keystore.ErrConflict
		}
		tag = "create"
	} else {
		var ct interface{ RowsAffected() int64 }
		ct, err = k.pool.Exec(ctx, `UPDATE mandate_keys SET data = $2, version = version + 1, updated_at = now()
			WHERE name = $1 AND version = $3`, name, data, version)
		if err == nil && ct.RowsAffected() == 0 {
			return keystore.Blob{}, keystore.ErrConflict
		}
		tag = "update"
	}
	if err != nil {
		return keystore.Blob{}, translate(ctx, tag+" key "+name, err)
	}
	next := version + 1
	if version == 0 {
		next = 1
	}
	return keystore.Blob{Name: name, Data: append([]byte(nil), data...), Version: next}, nil
}

func (k *Keys) Delete(ctx context.Context, name string) error {
	if err := keystore.CheckName(name); err != nil {
		return err
	}
	_, err := k.pool.Exec(ctx, `DELETE FROM mandate_keys WHERE name = $1`, name)
	return translate(ctx, "delete key "+name, err)
}

func (k *Keys) List(ctx context.Context, prefix string) ([]keystore.Blob, error) {
	// starts_with is exact (no LIKE escaping); COLLATE "C" orders by bytes.
	rows, err := k.pool.Query(ctx, `SELECT name, data, version FROM mandate_keys
		WHERE starts_with(name, $1) ORDER BY name COLLATE "C"`, prefix)
	if err != nil {
		return nil, translate(ctx, "list keys", err)
	}
	var out []keystore.Blob
	for rows.Next() {
		var b keystore.Blob
		if err := rows.Scan(&b.Name, &b.Data, &b.Version); err != nil {
			rows.Close()
			return nil, translate(ctx, "list keys", err)
		}
		out = append(out, b)
	}
	return out, translate(ctx, "list keys", rows.Err())
}

// Lock takes a transaction-scoped advisory lock on one connection of the
// pool, held until unlock (or until that connection dies: the server then
// releases it).
func (k *Keys) Lock(ctx context.Context, name string) (func(), error) {
	if err := keystore.CheckName(name); err != nil {
		return nil, err
	}
	tx, err := k.pool.Begin(ctx)
	if err != nil {
		return nil, translate(ctx, "lock key "+name, err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, int32(keyLockClass), name); err != nil {
		_ = tx.Rollback(context.Background())
		return nil, translate(ctx, "lock key "+name, err)
	}
	var once sync.Once
	return func() { once.Do(func() { _ = tx.Rollback(context.Background()) }) }, nil
}

func checkBlob(name string, data []byte) error {
	if err := keystore.CheckName(name); err != nil {
		return err
	}
	if len(data) > keystore.MaxBlob {
		return errors.New("keystore: " + name + ": blob too large")
	}
	return nil
}
