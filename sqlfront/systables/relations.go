package systables

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// A relation is something a statement may read: a system table of the
// catalog (system.access.audit, system.information_schema.*) or one of the
// pg_catalog relations that clients read for introspection. The audit
// table is a relation of the engine (catalog.AuditRelation, UsageRelation,
// PayloadsRelation); every other
// one is a virtual table whose rows are computed here, for the caller, at
// each execution, and handed to the engine with the query (see
// catalog.VirtualTable): no copy of the catalog lives in the engine, and
// rows the caller may not see never reach it.
type relation struct {
	schema, name string
	cols         []catalog.QueryColumn
	// engine is the engine's relation (the audit table); "" for a virtual table.
	engine string
	// table is true for the catalog's TABLE securables (SELECT needed).
	table bool
	// rows computes a virtual table's rows.
	rows func(rc *rowCtx) [][]any
	// oid is the relation's pg_class OID for pg_catalog relations (the
	// system tables take theirs from their securable).
	oid uint32
}

func (r *relation) key() string { return r.schema + "." + r.name }

// rowCtx is what row builders see: the committed catalog under its read
// lock, the caller, and the session.
type rowCtx struct {
	m    *catalog.Model
	me   *catalog.Principal
	sess Session
}

// relOID is the pg_class OID of a catalog securable (and pg_namespace OID
// of a schema, pg_database of a catalog, pg_authid of a principal):
// PostgreSQL's first user OID plus the catalog ID, so that OIDs are stable
// and never collide with pg_catalog's own.
func relOID(id catalog.ID) int64 { return 16384 + int64(id) }

// Well-known OIDs of pg_catalog.
const (
	nsPGCatalog      = 11
	classPGClass     = 1259
	classPGNamespace = 2615
	classPGDatabase  = 1262
)

// colsOf builds columns from name/type pairs.
func colsOf(spec ...any) []catalog.QueryColumn {
	out := make([]catalog.QueryColumn, 0, len(spec)/2)
	for i := 0; i+1 < len(spec); i += 2 {
		out = append(out, catalog.QueryColumn{Name: spec[i].(string), Type: catalog.ColumnType{Data: spec[i+1].(catalog.DataType)}})
	}
	return out
}

const (
	tText = catalog.DataText
	tBool = catalog.DataBool
	tI16  = catalog.DataInt16
	tI32  = catalog.DataInt32
	tI64  = catalog.DataInt64
	tF32  = catalog.DataFloat32
	tTSTZ = catalog.DataTimestamptz
	tJSON = catalog.DataJSON
)

var textList = catalog.QueryColumn{Type: catalog.ColumnType{Data: catalog.DataList, Elem: catalog.DataText}}

// oidList is a column of OIDs (oid[]).
func oidList(name string) catalog.QueryColumn {
	return catalog.QueryColumn{Name: name, Type: catalog.ColumnType{Data: catalog.DataList, Elem: catalog.DataInt64}}
}

// int2List is a column of smallint[] (and int2vector).
func int2List(name string) catalog.QueryColumn {
	return catalog.QueryColumn{Name: name, Type: catalog.ColumnType{Data: catalog.DataList, Elem: catalog.DataInt16}}
}

func concatCols(parts ...[]catalog.QueryColumn) []catalog.QueryColumn {
	var out []catalog.QueryColumn
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func withList(cols []catalog.QueryColumn, names ...string) []catalog.QueryColumn {
	for _, n := range names {
		c := textList
		c.Name = n
		cols = append(cols, c)
	}
	return cols
}

// relations is the registry, built once.
var relations = buildRelations()

func buildRelations() map[string]*relation {
	out := map[string]*relation{}
	add := func(r *relation) { out[r.key()] = r }
	for _, t := range catalog.SystemTables() {
		r := &relation{schema: t.Schema, name: t.Name, cols: tableColumns(t), table: true}
		if t.Relation != "" {
			r.engine = t.Relation
		} else {
			r.rows = infoRows[t.Name]
		}
		add(r)
	}
	for _, r := range infoCompatRelations() {
		add(r)
	}
	for _, r := range pgCatalogRelations() {
		add(r)
	}
	return out
}

// infoCompatCols are columns of PostgreSQL's information_schema views that
// clients read (Grafana's numeric_precision, Metabase's udt_schema and
// is_identity) and the catalog's system tables lack: they follow the
// table's own columns, in SELECT * as in information_schema.columns and
// pg_attribute.
var infoCompatCols = map[string][]catalog.QueryColumn{
	"information_schema.columns": colsOf("udt_catalog", tText, "udt_schema", tText, "character_maximum_length", tI32,
		"numeric_precision", tI32, "numeric_precision_radix", tI32, "numeric_scale", tI32, "datetime_precision", tI32,
		"is_identity", tText, "is_generated", tText, "generation_expression", tText, "is_updatable", tText),
}

// tableColumns returns the columns of a system table as queries see them.
func tableColumns(t catalog.SystemTable) []catalog.QueryColumn {
	return concatCols(t.Columns, infoCompatCols[t.Schema+"."+t.Name])
}

// infoCompatRelations are views of PostgreSQL's information_schema that
// clients join with (Metabase's primary keys) and that have no rows here:
// Mandate's tables have no constraints. They are not securables and need
// no privilege.
func infoCompatRelations() []*relation {
	info := func(name string, cols []catalog.QueryColumn) *relation {
		return &relation{schema: "information_schema", name: name, cols: cols, rows: empty}
	}
	return []*relation{
		info("table_constraints", colsOf("constraint_catalog", tText, "constraint_schema", tText, "constraint_name", tText,
			"table_catalog", tText, "table_schema", tText, "table_name", tText, "constraint_type", tText,
			"is_deferrable", tText, "initially_deferred", tText, "enforced", tText, "nulls_distinct", tText)),
		info("key_column_usage", colsOf("constraint_catalog", tText, "constraint_schema", tText, "constraint_name", tText,
			"table_catalog", tText, "table_schema", tText, "table_name", tText, "column_name", tText,
			"ordinal_position", tI32, "position_in_unique_constraint", tI32)),
		info("referential_constraints", colsOf("constraint_catalog", tText, "constraint_schema", tText,
			"constraint_name", tText, "unique_constraint_catalog", tText, "unique_constraint_schema", tText,
			"unique_constraint_name", tText, "match_option", tText, "update_rule", tText, "delete_rule", tText)),
	}
}

// columnCompat returns the values of infoCompatCols["information_schema.columns"]
// for a column of type t in catalog cat.
func columnCompat(cat string, t catalog.ColumnType) []any {
	var precision, radix, scale, datetime any
	switch t.Data {
	case catalog.DataInt16:
		precision, radix, scale = int32(16), int32(2), int32(0)
	case catalog.DataInt32:
		precision, radix, scale = int32(32), int32(2), int32(0)
	case catalog.DataInt64:
		precision, radix, scale = int32(64), int32(2), int32(0)
	case catalog.DataFloat32:
		precision, radix = int32(24), int32(2)
	case catalog.DataFloat64:
		precision, radix = int32(53), int32(2)
	case catalog.DataNumeric:
		radix = int32(10)
	case catalog.DataDate:
		datetime = int32(0)
	case catalog.DataTime, catalog.DataTimestamp, catalog.DataTimestamptz, catalog.DataInterval:
		datetime = int32(6)
	}
	return []any{cat, "pg_catalog", nil, precision, radix, scale, datetime, "NO", "NEVER", nil, "NO"}
}

// engineRelation returns the system table whose engine relation is name.
func engineRelation(name string) (*relation, bool) {
	for _, t := range catalog.SystemTables() {
		if t.Relation != "" && t.Relation == name {
			return lookupRelation(t.Schema, t.Name)
		}
	}
	return nil, false
}

// lookupRelation finds the relation a (schema, name) reference means.
func lookupRelation(schema, name string) (*relation, bool) {
	r, ok := relations[schema+"."+name]
	return r, ok
}

// --- information_schema rows ---------------------------------------------

var infoRows = map[string]func(rc *rowCtx) [][]any{
	"catalogs": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, c := range rc.securables(catalog.TypeCatalog) {
			rows = append(rows, []any{c.Name, rc.owner(c), nullIfEmpty(c.Comment), c.Created})
		}
		return rows
	},
	"schemata": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, s := range rc.securables(catalog.TypeSchema) {
			rows = append(rows, []any{rc.path(s)[0], s.Name, rc.owner(s), nullIfEmpty(s.Comment), s.Created})
		}
		return rows
	},
	"tables": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, t := range rc.securables(catalog.TypeTable) {
			p := rc.path(t)
			rows = append(rows, []any{p[0], p[1], t.Name, "BASE TABLE", rc.owner(t), nullIfEmpty(t.Comment), t.Created})
		}
		return rows
	},
	"columns": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, t := range rc.securables(catalog.TypeTable) {
			p := rc.path(t)
			st, ok := catalog.LookupSystemTable(p[1], t.Name)
			if !ok || p[0] != catalog.SystemCatalog {
				continue
			}
			for i, c := range tableColumns(st) {
				oid := typeOID(c.Type)
				rows = append(rows, append([]any{p[0], p[1], t.Name, c.Name, int32(i + 1), nil, "YES", c.Type.Data.String(),
					pgTypeName(oid), nullIfEmpty(c.Comment)}, columnCompat(p[0], c.Type)...))
			}
		}
		return rows
	},
	"connections": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, c := range rc.securables(catalog.TypeConnection) {
			p := rc.path(c)
			opts := map[string]string{}
			for k, v := range c.Options {
				if k != "type" {
					opts[k] = v
				}
			}
			b, _ := json.Marshal(opts)
			rows = append(rows, []any{p[0], p[1], c.Name, rc.owner(c), c.Options["type"], string(b), nullIfEmpty(c.Comment), c.Created})
		}
		return rows
	},
	"catalog_privileges":    func(rc *rowCtx) [][]any { return rc.privileges(catalog.TypeCatalog) },
	"schema_privileges":     func(rc *rowCtx) [][]any { return rc.privileges(catalog.TypeSchema) },
	"connection_privileges": func(rc *rowCtx) [][]any { return rc.privileges(catalog.TypeConnection) },
	"table_privileges":      func(rc *rowCtx) [][]any { return rc.privileges(catalog.TypeTable) },
	"service_privileges": func(rc *rowCtx) [][]any {
		return append(rc.privilegesOf(catalog.TypeModelService, true), rc.privilegesOf(catalog.TypeProviderService, true)...)
	},
	"model_services": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, t := range []catalog.SecurableType{catalog.TypeModelService, catalog.TypeProviderService} {
			for _, c := range rc.securables(t) {
				p := rc.path(c)
				opts := rc.m.DisplayOptions(c)
				var provider, dst, fb any
				if t == catalog.TypeProviderService {
					provider = opts[catalog.OptProvider]
				} else {
					dst = nullIfEmpty(opts[catalog.OptDestinations])
					fb = nullIfEmpty(opts[catalog.OptFallbacks])
					delete(opts, catalog.OptDestinations)
					delete(opts, catalog.OptFallbacks)
				}
				b, _ := json.Marshal(opts)
				rows = append(rows, []any{p[0], p[1], c.Name, string(t), rc.owner(c), provider, dst, fb, string(b),
					nullIfEmpty(c.Comment), c.Created})
			}
		}
		return rows
	},
	"users": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, p := range rc.m.Principals("") {
			if p.Kind == catalog.KindGroup {
				continue
			}
			rows = append(rows, []any{p.Name, string(p.Kind), rc.m.IsAdmin(p.ID), nullIfEmpty(p.Comment), p.Created})
		}
		return rows
	},
	"groups": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, p := range rc.m.Principals(catalog.KindGroup) {
			rows = append(rows, []any{p.Name, p.Admin, nullIfEmpty(p.Comment), p.Created})
		}
		return rows
	},
	"group_members": func(rc *rowCtx) [][]any {
		var rows [][]any
		for _, g := range rc.m.Principals(catalog.KindGroup) {
			for _, mem := range rc.m.Members(g.ID) {
				rows = append(rows, []any{g.Name, mem.Name, string(mem.Kind)})
			}
		}
		return rows
	},
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// securables returns the securables of type t the caller may see, sorted
// by full name.
func (rc *rowCtx) securables(t catalog.SecurableType) []*catalog.Securable {
	var out []*catalog.Securable
	var visit func(parent catalog.ID)
	visit = func(parent catalog.ID) {
		for _, c := range rc.m.Children(parent) {
			if c.Type == catalog.TypePolicy {
				continue
			}
			if c.Type == t {
				if rc.m.CanSee(rc.me.ID, c.ID) {
					out = append(out, c)
				}
				continue
			}
			visit(c.ID)
		}
	}
	if ms := rc.m.Metastore(); ms != nil {
		visit(ms.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName() < out[j].FullName() })
	return out
}

// path returns the names from the catalog down to s.
func (rc *rowCtx) path(s *catalog.Securable) []string {
	var names []string
	for _, a := range rc.m.Ancestors(s) {
		if a.Type == catalog.TypeMetastore {
			break
		}
		names = append([]string{a.Name}, names...)
	}
	return names
}

func (rc *rowCtx) owner(s *catalog.Securable) any {
	if p, ok := rc.m.Principal(s.Owner); ok {
		return p.Name
	}
	return nil
}

// privileges lists the grants on the visible securables of type t, and
// the grants on their containers that apply to them (inherited_from names
// the container), as SHOW GRANTS ON does: every grant for those who may
// manage the securable, else the grants to the caller and its groups.
func (rc *rowCtx) privileges(t catalog.SecurableType) [][]any { return rc.privilegesOf(t, false) }

// privilegesOf is privileges, with the securable's type after its names
// when withType is set (service_privileges).
func (rc *rowCtx) privilegesOf(t catalog.SecurableType, withType bool) [][]any {
	ti, _ := catalog.LookupType(t)
	var rows [][]any
	for _, s := range rc.securables(t) {
		all, _ := rc.m.CanManage(rc.me.ID, s.ID)
		names := rc.path(s)
		for depth, a := range rc.m.Ancestors(s) {
			if a.Type == catalog.TypeMetastore {
				break
			}
			var inherited any
			if depth > 0 {
				inherited = string(a.Type) + " " + a.FullName()
			}
			grants := rc.m.GrantsOn(a.ID)
			pids := make([]catalog.ID, 0, len(grants))
			for pid := range grants {
				pids = append(pids, pid)
			}
			sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
			for _, pid := range pids {
				if !all && !rc.m.InClosure(rc.me.ID, pid) {
					continue
				}
				grantee, ok := rc.m.Principal(pid)
				if !ok {
					continue
				}
				for _, pr := range grants[pid].List() {
					if depth > 0 && !ti.Applies(pr) {
						continue
					}
					var grantor any
					if g, ok := rc.m.Principal(rc.m.Grantor(catalog.GrantKey{Securable: a.ID, Principal: pid, Privilege: pr})); ok {
						grantor = g.Name
					}
					row := []any{grantor, grantee.Name}
					for _, n := range names {
						row = append(row, n)
					}
					if withType {
						row = append(row, string(s.Type))
					}
					rows = append(rows, append(row, pr.SQL(), "NO", inherited))
				}
			}
		}
	}
	return rows
}

// --- pg_catalog ----------------------------------------------------------

// pgType is one row of the emulated pg_type.
type pgType struct {
	oid      uint32
	name     string
	len      int16
	byval    bool
	category string
	elem     uint32
	array    uint32
	format   string // format_type's answer
}

var pgTypes = []pgType{
	{16, "bool", 1, true, "B", 0, 1000, "boolean"},
	{17, "bytea", -1, false, "U", 0, 1001, "bytea"},
	{18, "char", 1, true, "Z", 0, 1002, `"char"`},
	{19, "name", 64, false, "S", 0, 1003, "name"},
	{20, "int8", 8, true, "N", 0, 1016, "bigint"},
	{21, "int2", 2, true, "N", 0, 1005, "smallint"},
	{22, "int2vector", -1, false, "A", 21, 1006, "int2vector"},
	{23, "int4", 4, true, "N", 0, 1007, "integer"},
	{25, "text", -1, false, "S", 0, 1009, "text"},
	{26, "oid", 4, true, "N", 0, 1028, "oid"},
	{30, "oidvector", -1, false, "A", 26, 1013, "oidvector"},
	{114, "json", -1, false, "U", 0, 199, "json"},
	{700, "float4", 4, true, "N", 0, 1021, "real"},
	{701, "float8", 8, true, "N", 0, 1022, "double precision"},
	{705, "unknown", -2, false, "X", 0, 0, "unknown"},
	{1033, "aclitem", 16, false, "U", 0, 1034, "aclitem"},
	{1042, "bpchar", -1, false, "S", 0, 1014, "character"},
	{1043, "varchar", -1, false, "S", 0, 1015, "character varying"},
	{1082, "date", 4, true, "D", 0, 1182, "date"},
	{1083, "time", 8, true, "D", 0, 1183, "time without time zone"},
	{1114, "timestamp", 8, true, "D", 0, 1115, "timestamp without time zone"},
	{1184, "timestamptz", 8, true, "D", 0, 1185, "timestamp with time zone"},
	{1186, "interval", 16, false, "T", 0, 1187, "interval"},
	{1700, "numeric", -1, false, "N", 0, 1231, "numeric"},
	{2205, "regclass", 4, true, "N", 0, 2210, "regclass"},
	{2206, "regtype", 4, true, "N", 0, 2211, "regtype"},
	{2950, "uuid", 16, false, "U", 0, 2951, "uuid"},
	{3802, "jsonb", -1, false, "U", 0, 3807, "jsonb"},
	{199, "_json", -1, false, "A", 114, 0, "json[]"},
	{1000, "_bool", -1, false, "A", 16, 0, "boolean[]"},
	{1001, "_bytea", -1, false, "A", 17, 0, "bytea[]"},
	{1005, "_int2", -1, false, "A", 21, 0, "smallint[]"},
	{1007, "_int4", -1, false, "A", 23, 0, "integer[]"},
	{1009, "_text", -1, false, "A", 25, 0, "text[]"},
	{1015, "_varchar", -1, false, "A", 1043, 0, "character varying[]"},
	{1016, "_int8", -1, false, "A", 20, 0, "bigint[]"},
	{1021, "_float4", -1, false, "A", 700, 0, "real[]"},
	{1022, "_float8", -1, false, "A", 701, 0, "double precision[]"},
	{1028, "_oid", -1, false, "A", 26, 0, "oid[]"},
	{1034, "_aclitem", -1, false, "A", 1033, 0, "aclitem[]"},
	{1115, "_timestamp", -1, false, "A", 1114, 0, "timestamp without time zone[]"},
	{1182, "_date", -1, false, "A", 1082, 0, "date[]"},
	{1183, "_time", -1, false, "A", 1083, 0, "time without time zone[]"},
	{1185, "_timestamptz", -1, false, "A", 1184, 0, "timestamp with time zone[]"},
	{1187, "_interval", -1, false, "A", 1186, 0, "interval[]"},
	{1231, "_numeric", -1, false, "A", 1700, 0, "numeric[]"},
	{2951, "_uuid", -1, false, "A", 2950, 0, "uuid[]"},
}

func pgTypeName(oid uint32) string {
	for _, t := range pgTypes {
		if t.oid == oid {
			return t.name
		}
	}
	return "text"
}

// pgNamespace is one schema as pg_namespace shows it.
type pgNamespace struct {
	oid   int64
	name  string
	owner int64
	sec   *catalog.Securable // nil for pg_catalog
}

// namespaces returns pg_catalog and the visible schemas of the session's
// catalog (information_schema is system.information_schema).
func (rc *rowCtx) namespaces() []pgNamespace {
	admin := int64(10)
	if p, ok := rc.m.PrincipalByName(catalog.AdminUser); ok {
		admin = relOID(p.ID)
	}
	out := []pgNamespace{{oid: nsPGCatalog, name: "pg_catalog", owner: admin}}
	ms := rc.m.Metastore()
	if ms == nil {
		return out
	}
	cat, ok := rc.m.Child(ms.ID, catalog.TypeCatalog, rc.sess.Database())
	if !ok {
		return out
	}
	for _, s := range rc.m.Children(cat.ID) {
		if s.Type == catalog.TypeSchema && rc.m.CanSee(rc.me.ID, s.ID) {
			out = append(out, pgNamespace{oid: relOID(s.ID), name: s.Name, owner: relOID(s.Owner), sec: s})
		}
	}
	return out
}

// pgRelation is one relation as pg_class shows it.
type pgRelation struct {
	oid   int64
	ns    pgNamespace
	name  string
	owner int64
	cols  []catalog.QueryColumn
	sec   *catalog.Securable // nil for pg_catalog relations
}

// classes returns the relations of the visible namespaces: the system
// tables the caller may see and the emulated pg_catalog relations.
func (rc *rowCtx) classes() []pgRelation {
	var out []pgRelation
	for _, ns := range rc.namespaces() {
		if ns.sec == nil {
			for _, r := range pgCatalogOrder {
				out = append(out, pgRelation{oid: int64(r.oid), ns: ns, name: r.name, owner: ns.owner, cols: r.cols})
			}
			continue
		}
		for _, t := range rc.m.Children(ns.sec.ID) {
			if t.Type != catalog.TypeTable || !rc.m.CanSee(rc.me.ID, t.ID) {
				continue
			}
			st, ok := catalog.LookupSystemTable(ns.name, t.Name)
			if !ok || rc.sess.Database() != catalog.SystemCatalog {
				continue
			}
			out = append(out, pgRelation{oid: relOID(t.ID), ns: ns, name: t.Name, owner: relOID(t.Owner), cols: tableColumns(st), sec: t})
		}
	}
	return out
}

var pgCatalogOrder []*relation

func pgRel(name string, oid uint32, cols []catalog.QueryColumn, rows func(rc *rowCtx) [][]any) *relation {
	r := &relation{schema: "pg_catalog", name: name, cols: cols, oid: oid, rows: rows}
	pgCatalogOrder = append(pgCatalogOrder, r)
	return r
}

func empty(*rowCtx) [][]any { return nil }

func pgCatalogRelations() []*relation {
	return []*relation{
		pgRel("pg_namespace", classPGNamespace, withList(colsOf("oid", tI64, "nspname", tText, "nspowner", tI64), "nspacl"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, ns := range rc.namespaces() {
					rows = append(rows, []any{ns.oid, ns.name, ns.owner, nil})
				}
				return rows
			}),
		pgRel("pg_class", classPGClass, withList(colsOf("oid", tI64, "relname", tText, "relnamespace", tI64, "reltype", tI64,
			"reloftype", tI64, "relowner", tI64, "relam", tI64, "relfilenode", tI64, "reltablespace", tI64, "relpages", tI32,
			"reltuples", tF32, "relallvisible", tI32, "reltoastrelid", tI64, "relhasindex", tBool, "relisshared", tBool,
			"relpersistence", tText, "relkind", tText, "relnatts", tI16, "relchecks", tI16, "relhasrules", tBool,
			"relhastriggers", tBool, "relhassubclass", tBool, "relrowsecurity", tBool, "relforcerowsecurity", tBool,
			"relispopulated", tBool, "relreplident", tText, "relispartition", tBool, "relrewrite", tI64, "relfrozenxid", tI64,
			"relminmxid", tI64, "relpartbound", tText), "relacl", "reloptions"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, c := range rc.classes() {
					rows = append(rows, []any{c.oid, c.name, c.ns.oid, int64(0), int64(0), c.owner, int64(2), c.oid, int64(0),
						int32(0), float32(-1), int32(0), int64(0), false, false, "p", "r", int16(len(c.cols)), int16(0), false,
						false, false, false, false, true, "d", false, int64(0), int64(0), int64(0), nil, nil, nil})
				}
				return rows
			}),
		pgRel("pg_attribute", 1249, withList(colsOf("attrelid", tI64, "attname", tText, "atttypid", tI64, "attstattarget", tI16,
			"attlen", tI16, "attnum", tI16, "attndims", tI16, "attcacheoff", tI32, "atttypmod", tI32, "attbyval", tBool,
			"attalign", tText, "attstorage", tText, "attcompression", tText, "attnotnull", tBool, "atthasdef", tBool,
			"atthasmissing", tBool, "attidentity", tText, "attgenerated", tText, "attisdropped", tBool, "attislocal", tBool,
			"attinhcount", tI16, "attcollation", tI64), "attacl", "attoptions", "attfdwoptions"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, c := range rc.classes() {
					for i, col := range c.cols {
						oid := typeOID(col.Type)
						var coll int64
						if oid == oidText {
							coll = 100
						}
						t := pgTypeByOID(oid)
						rows = append(rows, []any{c.oid, col.Name, int64(oid), int16(-1), t.len, int16(i + 1), int16(0), int32(-1),
							int32(-1), t.byval, "i", "x", "", false, false, false, "", "", false, true, int16(0), coll, nil, nil, nil})
					}
				}
				return rows
			}),
		pgRel("pg_type", 1247, withList(colsOf("oid", tI64, "typname", tText, "typnamespace", tI64, "typowner", tI64, "typlen", tI16,
			"typbyval", tBool, "typtype", tText, "typcategory", tText, "typispreferred", tBool, "typisdefined", tBool,
			"typdelim", tText, "typrelid", tI64, "typsubscript", tText, "typelem", tI64, "typarray", tI64, "typinput", tText,
			"typoutput", tText, "typreceive", tText, "typsend", tText, "typmodin", tText, "typmodout", tText, "typanalyze", tText,
			"typalign", tText, "typstorage", tText, "typnotnull", tBool, "typbasetype", tI64, "typtypmod", tI32, "typndims", tI32,
			"typcollation", tI64, "typdefaultbin", tText, "typdefault", tText), "typacl"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, t := range pgTypes {
					var coll int64
					if t.category == "S" {
						coll = 100
					}
					base := strings.TrimPrefix(t.name, "_")
					if t.elem != 0 {
						base = "array"
					}
					rows = append(rows, []any{int64(t.oid), t.name, int64(nsPGCatalog), int64(10), t.len, t.byval, "b", t.category,
						false, true, ",", int64(0), "-", int64(t.elem), int64(t.array), base + "_in", base + "_out", base + "_recv",
						base + "_send", "-", "-", "-", "i", "x", false, int64(0), int32(-1), int32(0), coll, nil, nil, nil})
				}
				return rows
			}),
		pgRel("pg_roles", 1260, withList(colsOf("oid", tI64, "rolname", tText, "rolsuper", tBool, "rolinherit", tBool,
			"rolcreaterole", tBool, "rolcreatedb", tBool, "rolcanlogin", tBool, "rolreplication", tBool, "rolconnlimit", tI32,
			"rolpassword", tText, "rolvaliduntil", tTSTZ, "rolbypassrls", tBool), "rolconfig"), rolesRows),
		pgRel("pg_user", 12000, withList(colsOf("usesysid", tI64, "usename", tText, "usecreatedb", tBool, "usesuper", tBool,
			"userepl", tBool, "usebypassrls", tBool, "passwd", tText, "valuntil", tTSTZ), "useconfig"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, p := range rc.m.Principals("") {
					if p.Kind != catalog.KindGroup {
						rows = append(rows, []any{relOID(p.ID), p.Name, false, rc.m.IsAdmin(p.ID), false, false, "********", nil, nil})
					}
				}
				return rows
			}),
		pgRel("pg_auth_members", 1261, colsOf("oid", tI64, "roleid", tI64, "member", tI64, "grantor", tI64, "admin_option", tBool,
			"inherit_option", tBool, "set_option", tBool),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, g := range rc.m.Principals(catalog.KindGroup) {
					for _, mem := range rc.m.Members(g.ID) {
						rows = append(rows, []any{int64(0), relOID(g.ID), relOID(mem.ID), int64(10), false, true, true})
					}
				}
				return rows
			}),
		pgRel("pg_database", classPGDatabase, withList(colsOf("oid", tI64, "datname", tText, "datdba", tI64, "encoding", tI32,
			"datlocprovider", tText, "datistemplate", tBool, "datallowconn", tBool, "datconnlimit", tI32, "datfrozenxid", tI64,
			"datminmxid", tI64, "dattablespace", tI64, "datcollate", tText, "datctype", tText, "daticulocale", tText,
			"datcollversion", tText), "datacl"),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, c := range rc.securables(catalog.TypeCatalog) {
					rows = append(rows, []any{relOID(c.ID), c.Name, relOID(c.Owner), int32(6), "c", false, true, int32(-1), int64(0),
						int64(0), int64(1663), "C", "C", nil, nil, nil})
				}
				return rows
			}),
		pgRel("pg_description", 2609, colsOf("objoid", tI64, "classoid", tI64, "objsubid", tI32, "description", tText),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, ns := range rc.namespaces() {
					if ns.sec != nil && ns.sec.Comment != "" {
						rows = append(rows, []any{ns.oid, int64(classPGNamespace), int32(0), ns.sec.Comment})
					}
				}
				for _, c := range rc.classes() {
					if c.sec != nil && c.sec.Comment != "" {
						rows = append(rows, []any{c.oid, int64(classPGClass), int32(0), c.sec.Comment})
					}
					for i, col := range c.cols {
						if col.Comment != "" {
							rows = append(rows, []any{c.oid, int64(classPGClass), int32(i + 1), col.Comment})
						}
					}
				}
				for _, c := range rc.securables(catalog.TypeCatalog) {
					if c.Comment != "" {
						rows = append(rows, []any{relOID(c.ID), int64(classPGDatabase), int32(0), c.Comment})
					}
				}
				return rows
			}),
		pgRel("pg_shdescription", 2396, colsOf("objoid", tI64, "classoid", tI64, "description", tText), empty),
		pgRel("pg_am", 2601, colsOf("oid", tI64, "amname", tText, "amhandler", tText, "amtype", tText),
			func(*rowCtx) [][]any { return [][]any{{int64(2), "heap", "heap_tableam_handler", "t"}} }),
		pgRel("pg_attrdef", 2604, colsOf("oid", tI64, "adrelid", tI64, "adnum", tI16, "adbin", tText), empty),
		pgRel("pg_collation", 3456, colsOf("oid", tI64, "collname", tText, "collnamespace", tI64, "collowner", tI64,
			"collprovider", tText, "collisdeterministic", tBool, "collencoding", tI32, "collcollate", tText, "collctype", tText),
			func(*rowCtx) [][]any {
				return [][]any{{int64(100), "default", int64(nsPGCatalog), int64(10), "d", true, int32(-1), nil, nil}}
			}),
		// indkey and the other vectors are lists, as clients unnest them
		// (SQLAlchemy's primary keys, pgJDBC's _pg_expandarray).
		pgRel("pg_index", 2610, concatCols(colsOf("indexrelid", tI64, "indrelid", tI64, "indnatts", tI16, "indnkeyatts", tI16,
			"indisunique", tBool, "indnullsnotdistinct", tBool, "indisprimary", tBool, "indisexclusion", tBool,
			"indimmediate", tBool, "indisclustered", tBool, "indisvalid", tBool, "indcheckxmin", tBool, "indisready", tBool,
			"indislive", tBool, "indisreplident", tBool), []catalog.QueryColumn{int2List("indkey"), oidList("indcollation"),
			oidList("indclass"), int2List("indoption")}, colsOf("indexprs", tText, "indpred", tText)), empty),
		pgRel("pg_constraint", 2606, append(colsOf("oid", tI64, "conname", tText, "connamespace", tI64, "contype", tText,
			"condeferrable", tBool, "condeferred", tBool, "convalidated", tBool, "conrelid", tI64, "contypid", tI64,
			"conindid", tI64, "conparentid", tI64, "confrelid", tI64, "confupdtype", tText, "confdeltype", tText,
			"confmatchtype", tText, "conislocal", tBool, "coninhcount", tI32, "connoinherit", tBool),
			int2List("conkey"), int2List("confkey"), colsOf("conbin", tText)[0]), empty),
		pgRel("pg_inherits", 2611, colsOf("inhrelid", tI64, "inhparent", tI64, "inhseqno", tI32, "inhdetachpending", tBool), empty),
		pgRel("pg_trigger", 2620, colsOf("oid", tI64, "tgrelid", tI64, "tgparentid", tI64, "tgname", tText, "tgfoid", tI64,
			"tgtype", tI16, "tgenabled", tText, "tgisinternal", tBool, "tgconstrrelid", tI64, "tgconstrindid", tI64,
			"tgconstraint", tI64, "tgdeferrable", tBool, "tginitdeferred", tBool, "tgnargs", tI16), empty),
		pgRel("pg_rewrite", 2618, colsOf("oid", tI64, "rulename", tText, "ev_class", tI64, "ev_type", tText,
			"ev_enabled", tText, "is_instead", tBool), empty),
		pgRel("pg_policy", 3256, append(colsOf("oid", tI64, "polname", tText, "polrelid", tI64, "polcmd", tText,
			"polpermissive", tBool, "polqual", tText, "polwithcheck", tText), oidList("polroles")), empty),
		pgRel("pg_statistic_ext", 3381, withList(colsOf("oid", tI64, "stxrelid", tI64, "stxname", tText, "stxnamespace", tI64,
			"stxowner", tI64, "stxstattarget", tI32, "stxkeys", tText), "stxkind"), empty),
		pgRel("pg_publication", 6104, colsOf("oid", tI64, "pubname", tText, "pubowner", tI64, "puballtables", tBool,
			"pubinsert", tBool, "pubupdate", tBool, "pubdelete", tBool, "pubtruncate", tBool, "pubviaroot", tBool), empty),
		pgRel("pg_publication_rel", 6106, append(colsOf("oid", tI64, "prpubid", tI64, "prrelid", tI64, "prqual", tText),
			catalog.QueryColumn{Name: "prattrs", Type: catalog.ColumnType{Data: catalog.DataList, Elem: catalog.DataInt16}}), empty),
		pgRel("pg_publication_namespace", 6237, colsOf("oid", tI64, "pnpubid", tI64, "pnnspid", tI64), empty),
		pgRel("pg_partitioned_table", 3350, colsOf("partrelid", tI64, "partstrat", tText, "partnatts", tI16), empty),
		pgRel("pg_foreign_table", 3118, colsOf("ftrelid", tI64, "ftserver", tI64), empty),
		pgRel("pg_enum", 3501, colsOf("oid", tI64, "enumtypid", tI64, "enumsortorder", tF32, "enumlabel", tText), empty),
		pgRel("pg_sequence", 2224, colsOf("seqrelid", tI64, "seqtypid", tI64, "seqstart", tI64, "seqincrement", tI64,
			"seqmax", tI64, "seqmin", tI64, "seqcache", tI64, "seqcycle", tBool), empty),
		pgRel("pg_tablespace", 1213, colsOf("oid", tI64, "spcname", tText, "spcowner", tI64),
			func(*rowCtx) [][]any { return [][]any{{int64(1663), "pg_default", int64(10)}} }),
		pgRel("pg_extension", 3079, colsOf("oid", tI64, "extname", tText, "extowner", tI64, "extnamespace", tI64,
			"extrelocatable", tBool, "extversion", tText), empty),
		pgRel("pg_event_trigger", 3466, colsOf("oid", tI64, "evtname", tText, "evtevent", tText, "evtowner", tI64,
			"evtfoid", tI64, "evtenabled", tText), empty),
		pgRel("pg_proc", 1255, colsOf("oid", tI64, "proname", tText, "pronamespace", tI64, "proowner", tI64,
			"prolang", tI64, "prokind", tText, "prorettype", tI64, "pronargs", tI16, "proargtypes", tText), empty),
		pgRel("pg_settings", 12001, colsOf("name", tText, "setting", tText, "unit", tText, "category", tText,
			"short_desc", tText, "context", tText, "vartype", tText, "source", tText),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, k := range rc.sess.ParamNames() {
					v, _ := rc.sess.Param(k)
					rows = append(rows, []any{k, v, nil, "Mandate", "", "user", "string", "session"})
				}
				return rows
			}),
		pgRel("pg_tables", 12002, colsOf("schemaname", tText, "tablename", tText, "tableowner", tText, "tablespace", tText,
			"hasindexes", tBool, "hasrules", tBool, "hastriggers", tBool, "rowsecurity", tBool),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, c := range rc.classes() {
					if c.sec != nil {
						rows = append(rows, []any{c.ns.name, c.name, rc.owner(c.sec), nil, false, false, false, false})
					}
				}
				return rows
			}),
		pgRel("pg_views", 12003, colsOf("schemaname", tText, "viewname", tText, "viewowner", tText, "definition", tText), empty),
		pgRel("pg_matviews", 12004, colsOf("schemaname", tText, "matviewname", tText, "matviewowner", tText,
			"tablespace", tText, "hasindexes", tBool, "ispopulated", tBool, "definition", tText), empty),
		pgRel("pg_indexes", 12005, colsOf("schemaname", tText, "tablename", tText, "indexname", tText, "tablespace", tText,
			"indexdef", tText), empty),
		pgRel("pg_stat_user_tables", 12006, colsOf("relid", tI64, "schemaname", tText, "relname", tText, "n_live_tup", tI64),
			func(rc *rowCtx) [][]any {
				var rows [][]any
				for _, c := range rc.classes() {
					if c.sec != nil {
						rows = append(rows, []any{c.oid, c.ns.name, c.name, int64(0)})
					}
				}
				return rows
			}),
	}
}

func rolesRows(rc *rowCtx) [][]any {
	var rows [][]any
	for _, p := range rc.m.Principals("") {
		login := p.Kind != catalog.KindGroup && p.Password != ""
		super := rc.m.IsAdmin(p.ID)
		rows = append(rows, []any{relOID(p.ID), p.Name, super, true, super, false, login, false, int32(-1), "********",
			nil, false, nil})
	}
	return rows
}

func pgTypeByOID(oid uint32) pgType {
	for _, t := range pgTypes {
		if t.oid == oid {
			return t
		}
	}
	return pgType{oid: oid, name: "text", len: -1}
}
