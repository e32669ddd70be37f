package pgstore

import (
	"context"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/catalog"
)

// ViewsSchema is the schema of the relations the system tables read
// (catalog.AuditRelation, UsageRelation, PayloadsRelation); nothing else
// lives in it.
const ViewsSchema = "mandate_views"

// ViewsReader runs Mandate's own trusted queries over the views of the
// event stream (the budgets' spend from system_ai_gateway_usage): each in
// a READ ONLY transaction with search_path = mandate_views, so the
// relation names resolve as the system tables' do. It implements
// catalog.QueryEngine's Query for those callers; it is not the engine of
// users' SELECTs (Describe is refused).
type ViewsReader struct{ e *Events }

var _ catalog.QueryEngine = ViewsReader{}

// Views returns a reader of the views over this store's pool.
func (e *Events) Views() ViewsReader { return ViewsReader{e} }

// Dialect implements catalog.QueryEngine: PostgreSQL.
func (ViewsReader) Dialect() catalog.QueryDialect { return catalog.DialectPostgres }

// Describe is not supported.
func (ViewsReader) Describe(context.Context, catalog.Query) ([]catalog.QueryColumn, []catalog.ColumnType, error) {
	return nil, nil, catalog.Errorf(catalog.CodeInternal, "pgstore: the views reader runs Mandate's own queries only")
}

// Query runs q.SQL (PostgreSQL, parameters $1..$n; no virtual tables) and
// calls row with each row's values in catalog's Go types (text, int16/32/64,
// float64, bool, time.Time, catalog.Decimal; json as its text).

func (v ViewsReader) Query(ctx context.Context, q catalog.Query, row func(values []any) error) error {
	if err := v.e.check(ctx); err != nil {
		return err
	}
	if len(q.Tables) > 0 {
		return catalog.Errorf(catalog.CodeInternal, "pgstore: the views reader has no virtual tables")
	}
	return pgx.BeginTxFunc(ctx, v.e.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path = `+ViewsSchema); err != nil {
			return translate(ctx, "query the event views", err)
		}
		rows, err := tx.Query(ctx, q.SQL, q.Args...)
		if err != nil {
			return translate(ctx, "query the event views", err)
		}
		defer rows.Close()
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				return translate(ctx, "query the event views", err)
			}
			raw, fds := rows.RawValues(), rows.FieldDescriptions()
			for i, x := range vals {
				vals[i] = goValue(x)
				if oid := fds[i].DataTypeOID; (oid == pgtype.JSONOID || oid == pgtype.JSONBOID) && raw[i] != nil {
					b := raw[i]
					if oid == pgtype.JSONBOID && len(b) > 0 && b[0] == 1 { // binary jsonb: version byte
						b = b[1:]
					}
					vals[i] = string(b)
				}
			}
			if err := row(vals); err != nil {
				return err
			}
		}
		return translate(ctx, "query the event views", rows.Err())
	})
}

// goValue converts pgx's decoded values to catalog's row types.
func goValue(x any) any {
	switch x := x.(type) {
	case pgtype.Numeric:
		if !x.Valid || x.NaN || x.Int == nil {
			return nil
		}
		if x.Exp >= 0 {
			return catalog.Decimal{Unscaled: new(big.Int).Mul(x.Int, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Exp)), nil))}
		}
		return catalog.Decimal{Unscaled: new(big.Int).Set(x.Int), Scale: int(-x.Exp)}
	case time.Time:
		return x.UTC()
	}
	return x
}
