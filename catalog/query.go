package catalog

import (
	"context"
	"fmt"
	"math/big"
	"time"
)

// This file is the contract between the SQL front end's system tables
// (sqlfront/systables) and the store's SQL engine (catalog/duckstore):
// the built-in TABLE securables, the types of their columns, and
// QueryEngine, which runs one read-only SELECT. The front end checks
// privileges, validates and rewrites the statement; the engine only runs
// it. Packages that need no cgo depend on this interface, never on the
// engine (see layering_test.go).

// DataType is the type of a column of a system table or of a query result,
// as the SQL front end maps it to a PostgreSQL type. The zero value is
// text.
type DataType uint8

// Data types and the Go values that carry them in rows (nil is NULL).
const (
	DataText        DataType = iota // string
	DataBool                        // bool
	DataInt16                       // int16
	DataInt32                       // int32
	DataInt64                       // int64
	DataFloat32                     // float32
	DataFloat64                     // float64
	DataNumeric                     // Decimal
	DataBytes                       // []byte
	DataDate                        // time.Time (UTC midnight)
	DataTime                        // time.Duration since midnight
	DataTimestamp                   // time.Time, without time zone (UTC fields)
	DataTimestamptz                 // time.Time
	DataInterval                    // Interval
	DataUUID                        // [16]byte
	DataJSON                        // string (JSON text)
	DataList                        // []any of ColumnType.Elem values
)

var dataTypeNames = [...]string{DataText: "text", DataBool: "boolean", DataInt16: "smallint", DataInt32: "integer",
	DataInt64: "bigint", DataFloat32: "real", DataFloat64: "double precision", DataNumeric: "numeric", DataBytes: "bytea",
	DataDate: "date", DataTime: "time without time zone", DataTimestamp: "timestamp without time zone",
	DataTimestamptz: "timestamp with time zone", DataInterval: "interval", DataUUID: "uuid", DataJSON: "json", DataList: "array"}

// String returns the PostgreSQL name of the type (information_schema.columns.data_type).
func (t DataType) String() string {
	if int(t) < len(dataTypeNames) {
		return dataTypeNames[t]
	}
	return fmt.Sprintf("DataType(%d)", t)
}

// ColumnType is the full type of a column.
type ColumnType struct {
	Data DataType
	// Elem is the element type of a DataList.
	Elem DataType
	// Precision and Scale of a DataNumeric, when the engine knows them.
	Precision, Scale int
	// Engine is the engine's own name of the type (for messages), if any.
	Engine string
	// OID is the PostgreSQL type OID when the engine knows it exactly
	// (DialectPostgres); 0 means the front end derives it from Data.
	OID uint32
}

// QueryColumn is a named, typed column.
type QueryColumn struct {
	Name    string
	Type    ColumnType
	Comment string
}

// Decimal is an exact number: Unscaled × 10^-Scale.
type Decimal struct {
	Unscaled *big.Int
	Scale    int
}

// String renders the decimal in plain notation ("-12.50").
func (d Decimal) String() string {
	if d.Unscaled == nil {
		return "0"
	}
	s := new(big.Int).Abs(d.Unscaled).String()
	neg := d.Unscaled.Sign() < 0
	if d.Scale > 0 {
		for len(s) <= d.Scale {
			s = "0" + s
		}
		s = s[:len(s)-d.Scale] + "." + s[len(s)-d.Scale:]
	} else if d.Scale < 0 {
		for i := 0; i < -d.Scale; i++ {
			s += "0"
		}
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Interval is a PostgreSQL interval: months, days and microseconds.
type Interval struct {
	Months int32
	Days   int32
	Micros int64
}

// VirtualTable is a relation whose rows the front end computes for one
// query (the information_schema views, filtered to what the caller may
// see, and the pg_catalog emulation). The statement refers to it as
// VirtualTableFunc('name') in its FROM clause.
type VirtualTable struct {
	Columns []QueryColumn
	// Rows returns the rows, each with one value per column (see DataType
	// for the Go types). It is called at most once per engine call.
	Rows func(ctx context.Context) ([][]any, error)
}

// Query is one statement for a QueryEngine.
type Query struct {
	// SQL is one read-only SELECT in the engine's dialect (PostgreSQL
	// syntax as DuckDB reads it), with parameters $1..$n. It is trusted:
	// the front end built it from a validated statement.
	SQL string
	// Args are the parameter values (see DataType for the Go types; a
	// string is taken as an untyped literal the engine converts).
	Args []any
	// Tables are the virtual relations the statement refers to
	// (DialectDuckDB; on DialectPostgres their rows are parameters).
	Tables map[string]*VirtualTable
	// TimeZone is the session's TimeZone, for engines that evaluate time
	// zones themselves (DialectPostgres); "" is UTC.
	TimeZone string
}

// QueryDialect is the SQL a QueryEngine reads; the front end writes each
// statement in its engine's dialect.
type QueryDialect uint8

const (
	// DialectDuckDB is PostgreSQL syntax as DuckDB reads it: the front
	// end writes PostgreSQL's semantics where DuckDB's differ, raises
	// errors with error() and RaisePrefix, and reads virtual tables
	// through VirtualTableFunc.
	DialectDuckDB QueryDialect = iota
	// DialectPostgres is PostgreSQL itself: the validated statement is
	// written as PostgreSQL parsed it, the engine relations are views
	// in the engine's schema, and every virtual table is a JSON
	// parameter read with json_to_recordset.
	DialectPostgres
)

// QueryEngine runs read-only queries over the store: the audit table
// (AuditRelation) and virtual tables supplied per query. Implementations
// run without access to files, the network, extensions or settings; a
// query stops when ctx is done (statement timeout, cancel request). Errors
// are *QueryError where the engine can tell the cause.
type QueryEngine interface {
	// Describe prepares q without running it: the result columns and the
	// types the engine infers for the parameters (DataText when it cannot).
	Describe(ctx context.Context, q Query) (cols []QueryColumn, params []ColumnType, err error)
	// Query runs q and calls row with each result row (a fresh slice each
	// time, one value per column of Describe). An error from row stops the
	// query and is returned.
	Query(ctx context.Context, q Query, row func(values []any) error) error
	// Dialect is the SQL the engine reads.
	Dialect() QueryDialect
}

// QueryError is an error of the query engine with a PostgreSQL SQLSTATE.
type QueryError struct {
	SQLState string // e.g. 42703 undefined column, 22P02 invalid text representation
	Msg      string // in PostgreSQL's wording
	Detail   string
	Hint     string
	// Name is the identifier the error is about (the column the engine
	// could not bind), when it names one.
	Name string
	// Position is where the engine located the error in the Query's SQL
	// (PostgreSQL's 1-based character position), 0 if nowhere.
	Position int32
	Err      error
}

func (e *QueryError) Error() string { return e.Msg }
func (e *QueryError) Unwrap() error { return e.Err }

// Names shared by the front end's rewriting and the engine.
const (
	// AuditRelation is the engine's relation behind system.access.audit,
	// with the columns of AuditColumns.
	AuditRelation = "system_access_audit"
	// UsageRelation and PayloadsRelation are the engine's relations
	// behind system.ai_gateway.usage and system.ai_gateway.payloads
	// (views over the same audit events).
	UsageRelation    = "system_ai_gateway_usage"
	PayloadsRelation = "system_ai_gateway_payloads"
	// VirtualTableFunc is the engine's table function that returns the
	// rows of a Query's virtual table: VirtualTableFunc('name').
	VirtualTableFunc = "mandate_virtual_table"
	// RaisePrefix starts the message of an error a statement raises on
	// purpose with the engine's error() function: RaisePrefix, a
	// SQLSTATE, ":" and the message. The front end writes such calls
	// where PostgreSQL fails and the engine would not (division by zero,
	// invalid input); the engine reports them as a QueryError with that
	// SQLSTATE and message.
	RaisePrefix = "mandate-raise:"
	// DefaultAuditRetention is how long audit events are kept by default.
	DefaultAuditRetention = 365 * 24 * time.Hour
)

// SystemTable is a built-in TABLE securable: system.<Schema>.<Name>.
type SystemTable struct {
	Schema  string
	Name    string
	Comment string
	Columns []QueryColumn
	// Relation is the engine's relation behind the table (AuditRelation,
	// ...); "" for the virtual tables the front end computes.
	Relation string
}

func cols(spec ...any) []QueryColumn {
	out := make([]QueryColumn, 0, len(spec)/2)
	for i := 0; i+1 < len(spec); i += 2 {
		out = append(out, QueryColumn{Name: spec[i].(string), Type: ColumnType{Data: spec[i+1].(DataType)}})
	}
	return out
}

// AuditColumns are the columns of system.access.audit, named after
// Databricks' system.access.audit.
var AuditColumns = []QueryColumn{
	{Name: "event_time", Type: ColumnType{Data: DataTimestamptz}, Comment: "when the event happened"},
	{Name: "event_date", Type: ColumnType{Data: DataDate}, Comment: "event_time's date in UTC"},
	{Name: "event_id", Type: ColumnType{Data: DataText}, Comment: "unique id of the event (UUID)"},
	{Name: "service_name", Type: ColumnType{Data: DataText}, Comment: "sql, authorization, mcp, llm"},
	{Name: "action_name", Type: ColumnType{Data: DataText}, Comment: "statement kind (GRANT, CREATE CONNECTION, ...) or JSON-RPC method (tools/call, ...)"},
	{Name: "user_identity", Type: ColumnType{Data: DataText}, Comment: "the human, or the service principal acting on its own"},
	{Name: "identity_metadata", Type: ColumnType{Data: DataJSON}, Comment: `{"run_by": the human, "run_as": the agent}`},
	{Name: "source_ip_address", Type: ColumnType{Data: DataText}},
	{Name: "user_agent", Type: ColumnType{Data: DataText}},
	{Name: "session_id", Type: ColumnType{Data: DataText}},
	{Name: "request_id", Type: ColumnType{Data: DataText}},
	{Name: "securable_type", Type: ColumnType{Data: DataText}},
	{Name: "securable_name", Type: ColumnType{Data: DataText}},
	{Name: "request_params", Type: ColumnType{Data: DataJSON}, Comment: "tool name, arguments size, statement text with secrets redacted"},
	{Name: "response", Type: ColumnType{Data: DataJSON}, Comment: `{"status_code", "error_message", "sql_state"}`},
	{Name: "decision", Type: ColumnType{Data: DataText}, Comment: "allow or deny"},
	{Name: "reason", Type: ColumnType{Data: DataText}},
	{Name: "latency_ms", Type: ColumnType{Data: DataFloat64}},
	{Name: "trace_id", Type: ColumnType{Data: DataText}, Comment: "W3C trace id of the request's trace (joins traces)"},
	{Name: "span_id", Type: ColumnType{Data: DataText}, Comment: "span of the request in its trace"},
	{Name: "guardrails", Type: ColumnType{Data: DataJSON}, Comment: "guardrail outcomes: policy, phase, mode, action, entity counts (never the matched text)"},
}

// UsageColumns are the columns of system.ai_gateway.usage: one row per
// LLM request.
var UsageColumns = []QueryColumn{
	{Name: "event_time", Type: ColumnType{Data: DataTimestamptz}},
	{Name: "request_id", Type: ColumnType{Data: DataText}},
	{Name: "service_name", Type: ColumnType{Data: DataText}, Comment: "the model service called"},
	{Name: "provider_service", Type: ColumnType{Data: DataText}, Comment: "the model provider service that answered"},
	{Name: "provider", Type: ColumnType{Data: DataText}, Comment: "openai, anthropic, openai_compatible"},
	{Name: "model", Type: ColumnType{Data: DataText}, Comment: "the destination model"},
	{Name: "requester", Type: ColumnType{Data: DataText}, Comment: "the human, or the service principal acting on its own"},
	{Name: "run_as", Type: ColumnType{Data: DataText}, Comment: "the agent acting for the requester"},
	{Name: "status_code", Type: ColumnType{Data: DataInt32}, Comment: "HTTP status answered"},
	{Name: "input_tokens", Type: ColumnType{Data: DataInt64}, Comment: "input tokens, without cached input and cache writes"},
	{Name: "output_tokens", Type: ColumnType{Data: DataInt64}},
	{Name: "cached_input_tokens", Type: ColumnType{Data: DataInt64}},
	{Name: "cache_write_tokens", Type: ColumnType{Data: DataInt64}},
	{Name: "reasoning_tokens", Type: ColumnType{Data: DataInt64}, Comment: "part of output_tokens"},
	{Name: "total_tokens", Type: ColumnType{Data: DataInt64}},
	{Name: "cost_usd", Type: ColumnType{Data: DataNumeric}, Comment: "cost from the provider service's prices"},
	{Name: "latency_ms", Type: ColumnType{Data: DataFloat64}},
	{Name: "ttft_ms", Type: ColumnType{Data: DataFloat64}, Comment: "time to first token of a stream"},
	{Name: "streaming", Type: ColumnType{Data: DataBool}},
	{Name: "request_tags", Type: ColumnType{Data: DataJSON}, Comment: "the service's tags and X-Mandate-Request-Tags"},
	{Name: "routing", Type: ColumnType{Data: DataJSON}, Comment: "each attempt: destination, status"},
	{Name: "trace_id", Type: ColumnType{Data: DataText}},
	{Name: "span_id", Type: ColumnType{Data: DataText}},
}

// PayloadColumns are the columns of system.ai_gateway.payloads.
var PayloadColumns = []QueryColumn{
	{Name: "event_time", Type: ColumnType{Data: DataTimestamptz}},
	{Name: "request_id", Type: ColumnType{Data: DataText}, Comment: "joins system.ai_gateway.usage"},
	{Name: "service_name", Type: ColumnType{Data: DataText}},
	{Name: "requester", Type: ColumnType{Data: DataText}},
	{Name: "run_as", Type: ColumnType{Data: DataText}},
	{Name: "request_body", Type: ColumnType{Data: DataText}, Comment: "the request body, cut to 64 KiB"},
	{Name: "response_body", Type: ColumnType{Data: DataText}, Comment: "the response body (a stream's events), cut to 64 KiB"},
	{Name: "trace_id", Type: ColumnType{Data: DataText}},
}

var privilegeCols = []any{"grantor", DataText, "grantee", DataText}
var privilegeTail = []any{"privilege_type", DataText, "is_grantable", DataText, "inherited_from", DataText}

func privCols(names ...string) []QueryColumn {
	spec := append([]any{}, privilegeCols...)
	for _, n := range names {
		spec = append(spec, n, DataText)
	}
	return cols(append(spec, privilegeTail...)...)
}

var systemTables = []SystemTable{
	{Schema: "access", Name: "audit", Comment: "audit log: SQL statements, authorization decisions, MCP messages, LLM calls", Columns: AuditColumns, Relation: AuditRelation},
	{Schema: "ai_gateway", Name: "usage", Comment: "one row per LLM request: tokens, cost, latency, routing", Columns: UsageColumns, Relation: UsageRelation},
	{Schema: "ai_gateway", Name: "payloads", Comment: "captured request and response bodies of model services with log_payloads", Columns: PayloadColumns, Relation: PayloadsRelation},
	{Schema: "information_schema", Name: "catalogs", Comment: "catalogs the caller may see",
		Columns: cols("catalog_name", DataText, "catalog_owner", DataText, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "schemata", Comment: "schemas the caller may see",
		Columns: cols("catalog_name", DataText, "schema_name", DataText, "schema_owner", DataText, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "tables", Comment: "tables the caller may see",
		Columns: cols("table_catalog", DataText, "table_schema", DataText, "table_name", DataText, "table_type", DataText,
			"table_owner", DataText, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "columns", Comment: "columns of the tables the caller may see",
		Columns: cols("table_catalog", DataText, "table_schema", DataText, "table_name", DataText, "column_name", DataText,
			"ordinal_position", DataInt32, "column_default", DataText, "is_nullable", DataText, "data_type", DataText,
			"udt_name", DataText, "comment", DataText)},
	{Schema: "information_schema", Name: "connections", Comment: "connections the caller may see",
		Columns: cols("connection_catalog", DataText, "connection_schema", DataText, "connection_name", DataText,
			"connection_owner", DataText, "connection_type", DataText, "connection_options", DataJSON, "comment", DataText,
			"created", DataTimestamptz)},
	{Schema: "information_schema", Name: "catalog_privileges", Comment: "grants on catalogs",
		Columns: privCols("catalog_name")},
	{Schema: "information_schema", Name: "schema_privileges", Comment: "grants on schemas, and on their catalogs that apply to them",
		Columns: privCols("catalog_name", "schema_name")},
	{Schema: "information_schema", Name: "connection_privileges", Comment: "grants on connections, and on their schemas and catalogs that apply to them",
		Columns: privCols("connection_catalog", "connection_schema", "connection_name")},
	{Schema: "information_schema", Name: "table_privileges", Comment: "grants on tables, and on their schemas and catalogs that apply to them",
		Columns: privCols("table_catalog", "table_schema", "table_name")},
	{Schema: "information_schema", Name: "model_services", Comment: "model services and model provider services the caller may see",
		Columns: cols("service_catalog", DataText, "service_schema", DataText, "service_name", DataText, "service_type", DataText,
			"service_owner", DataText, "provider", DataText, "destinations", DataText, "fallbacks", DataText,
			"service_options", DataJSON, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "service_privileges", Comment: "grants on model services and model provider services, and on their schemas and catalogs that apply to them",
		Columns: privCols("service_catalog", "service_schema", "service_name", "service_type")},
	{Schema: "information_schema", Name: "users", Comment: "users and service principals the caller may see",
		Columns: cols("user_name", DataText, "user_kind", DataText, "is_admin", DataBool, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "groups", Comment: "groups the caller may see",
		Columns: cols("group_name", DataText, "is_admin", DataBool, "comment", DataText, "created", DataTimestamptz)},
	{Schema: "information_schema", Name: "group_members", Comment: "direct group memberships the caller may see",
		Columns: cols("group_name", DataText, "member_name", DataText, "member_kind", DataText)},
}

// SystemTables returns the built-in tables of the system catalog, in a
// stable order. Each is a TABLE securable system.<schema>.<name>, created
// at bootstrap (or when an older catalog is opened).
func SystemTables() []SystemTable {
	out := make([]SystemTable, len(systemTables))
	copy(out, systemTables)
	return out
}

// LookupSystemTable returns the system table schema.name.
func LookupSystemTable(schema, name string) (SystemTable, bool) {
	for _, t := range systemTables {
		if t.Schema == schema && t.Name == name {
			return t, true
		}
	}
	return SystemTable{}, false
}
