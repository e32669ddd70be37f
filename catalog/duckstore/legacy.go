package duckstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"strconv"

	"github.com/mandatehq/mandate/catalog"
)

// Data directories written before the catalog moved to change records and
// a snapshot (catalog/walstore) kept the catalog in the tables principals,
// memberships, securables and grants, with its revision, next free ID and
// the last applied log record in mandate_meta. The upgrade
// (catalog/embedded) reads them once with Legacy, then FinishUpgrade
// empties them; nothing writes them any more.

// Legacy returns the catalog held in the tables (nil when they hold
// nothing) and the sequence number of the last catalog.wal record applied
// to them.
func (s *Store) Legacy(ctx context.Context) (st *catalog.State, logSeq int64, err error) {
	if s.closed.Load() {
		return nil, 0, errClosed()
	}
	m, err := readMeta(ctx, s.db)
	if err != nil {
		return nil, 0, err
	}
	st = &catalog.State{Revision: m.Revision, NextID: m.NextID}
	if st.Principals, err = listPrincipals(ctx, s.db); err != nil {
		return nil, 0, err
	}
	if st.Memberships, err = listMemberships(ctx, s.db); err != nil {
		return nil, 0, err
	}
	if st.Securables, err = listSecurables(ctx, s.db); err != nil {
		return nil, 0, err
	}
	if st.Grants, err = listGrants(ctx, s.db); err != nil {
		return nil, 0, err
	}
	if len(st.Principals)+len(st.Securables) == 0 {
		st = nil
	}
	return st, m.LogSeq, nil
}

// FinishUpgrade completes an upgrade, in one transaction: it appends the
// audit events the legacy catalog.wal still held (completions applied),
// records logSeq as the last record applied and mark as the
// AuditedRevision (the audit of every catalog change up to it is in the
// table), and empties the legacy catalog tables.
func (s *Store) FinishUpgrade(ctx context.Context, events []catalog.AuditEvent, logSeq int64, mark catalog.Revision) error {
	return s.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := tx.AppendAudit(ctx, events...); err != nil {
			return err
		}
		for _, table := range []string{"grants", "memberships", "securables", "principals"} {
			if err := tx.exec(ctx, "empty "+table, "DELETE FROM "+table); err != nil {
				return err
			}
		}
		return tx.setMeta(ctx, map[string]int64{"log_seq": logSeq, "audit_revision": int64(mark)})
	})
}

func readMeta(ctx context.Context, q querier) (catalog.Meta, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM mandate_meta WHERE key IN ('revision', 'next_id', 'log_seq')`)
	if err != nil {
		return catalog.Meta{}, translate(ctx, "read meta", err)
	}
	defer rows.Close()
	var m catalog.Meta
	seen := 0
	for rows.Next() {
		var key string
		var v int64
		if err := rows.Scan(&key, &v); err != nil {
			return catalog.Meta{}, translate(ctx, "read meta", err)
		}
		switch key {
		case "revision":
			m.Revision = catalog.Revision(v)
		case "next_id":
			m.NextID = catalog.ID(v)
		case "log_seq":
			m.LogSeq = v
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return catalog.Meta{}, translate(ctx, "read meta", err)
	}
	if seen != 3 {
		return catalog.Meta{}, catalog.Errorf(catalog.CodeInternal, "catalog store: mandate_meta lacks revision, next_id or log_seq")
	}
	return m, nil
}

// list runs query and calls scan for each row.
func list(ctx context.Context, q querier, op, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return translate(ctx, op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return translate(ctx, op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(ctx, op, err)
	}
	return nil
}

func listPrincipals(ctx context.Context, q querier) ([]catalog.Principal, error) {
	var ps []catalog.Principal
	err := list(ctx, q, "list principals",
		`SELECT id, name, kind, admin, builtin, password, comment, created FROM principals ORDER BY id`, nil,
		func(rows *sql.Rows) error {
			var p catalog.Principal
			var id int64
			var kind string
			if err := rows.Scan(&id, &p.Name, &kind, &p.Admin, &p.Builtin, &p.Password, &p.Comment, &p.Created); err != nil {
				return err
			}
			p.ID, p.Kind, p.Created = catalog.ID(id), catalog.PrincipalKind(kind), p.Created.UTC()
			ps = append(ps, p)
			return nil
		})
	return ps, err
}

func listMemberships(ctx context.Context, q querier) ([]catalog.Membership, error) {
	var ms []catalog.Membership
	err := list(ctx, q, "list memberships",
		`SELECT group_id, member_id FROM memberships ORDER BY group_id, member_id`, nil,
		func(rows *sql.Rows) error {
			var g, m int64
			if err := rows.Scan(&g, &m); err != nil {
				return err
			}
			ms = append(ms, catalog.Membership{Group: catalog.ID(g), Member: catalog.ID(m)})
			return nil
		})
	return ms, err
}

func listSecurables(ctx context.Context, q querier) ([]catalog.Securable, error) {
	var ss []catalog.Securable
	err := list(ctx, q, "list securables",
		`SELECT id, type, parent_id, name, owner_id, comment, options, secrets, builtin, created
		 FROM securables ORDER BY id`, nil,
		func(rows *sql.Rows) error {
			var s catalog.Securable
			var id, parent, owner int64
			var typ string
			var options sql.NullString
			if err := rows.Scan(&id, &typ, &parent, &s.Name, &owner, &s.Comment, &options, &s.Secrets,
				&s.Builtin, &s.Created); err != nil {
				return err
			}
			if options.Valid {
				if err := json.Unmarshal([]byte(options.String), &s.Options); err != nil {
					return catalog.Internal(err, "catalog store: securable "+strconv.FormatInt(id, 10)+": decode options")
				}
				if s.Options == nil { // "null"
					s.Options = map[string]string{}
				}
			}
			s.ID, s.Type, s.Parent, s.Owner = catalog.ID(id), catalog.SecurableType(typ), catalog.ID(parent), catalog.ID(owner)
			s.Created = s.Created.UTC()
			ss = append(ss, s)
			return nil
		})
	return ss, err
}

func listGrants(ctx context.Context, q querier) ([]catalog.Grant, error) {
	var gs []catalog.Grant
	err := list(ctx, q, "list grants",
		`SELECT securable_id, principal_id, privilege, grantor_id FROM grants
		 ORDER BY securable_id, principal_id, privilege`, nil,
		func(rows *sql.Rows) error {
			var sec, prin, grantor int64
			var priv string
			if err := rows.Scan(&sec, &prin, &priv, &grantor); err != nil {
				return err
			}
			gs = append(gs, catalog.Grant{Securable: catalog.ID(sec), Principal: catalog.ID(prin),
				Privilege: catalog.Privilege(priv), Grantor: catalog.ID(grantor)})
			return nil
		})
	return gs, err
}
