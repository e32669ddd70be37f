package duckstore

import (
	"regexp"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

// pgError is the one place where an error of DuckDB becomes PostgreSQL's:
// its SQLSTATE and PostgreSQL's wording, with DuckDB's own vocabulary
// (error classes, type names such as INT32 or VARCHAR, candidate lists,
// "Did you mean") left out. msg is DuckDB's message without the class
// prefix and the LINE excerpt. Errors a statement raises on purpose
// (catalog.RaisePrefix) carry their own SQLSTATE and message.
func pgError(t duckdb.ErrorType, msg string) *catalog.QueryError {
	msg = strings.TrimSpace(msg)
	if i := strings.Index(msg, catalog.RaisePrefix); i >= 0 && (t == duckdb.ErrorTypeInvalidInput || t == duckdb.ErrorTypeUnknownType) {
		rest := msg[i+len(catalog.RaisePrefix):]
		if len(rest) > 6 && rest[5] == ':' {
			return &catalog.QueryError{SQLState: rest[:5], Msg: rest[6:]}
		}
	}
	for _, r := range errorRules {
		if r.types != nil && !r.types[t] {
			continue
		}
		m := r.re.FindStringSubmatch(msg)
		if m == nil {
			continue
		}
		qe := r.fn(m)
		return qe
	}
	if t == duckdb.ErrorTypeOutOfMemory {
		// DuckDB appends advice about its own settings, which are the
		// server's, not the client's.
		return &catalog.QueryError{SQLState: "53200", Msg: "out of memory: " + cleanMessage(strings.SplitN(msg, "\n", 2)[0])}
	}
	return &catalog.QueryError{SQLState: defaultState(t, msg), Msg: cleanMessage(msg)}
}

// driverError is PostgreSQL's error for a failure of the driver rather
// than of DuckDB (binding parameters).
func driverError(msg string) *catalog.QueryError {
	msg = strings.TrimPrefix(strings.TrimPrefix(msg, "database/sql/driver: "), "API error: ")
	if strings.Contains(msg, "unsupported data type: INVALID") {
		return state("42P18", "could not determine data type of a parameter")
	}
	return state("XX000", "query engine: "+cleanMessage(msg))
}

// errorRule maps DuckDB messages matching re (of the error types in
// types; nil: any) to PostgreSQL's error.
type errorRule struct {
	types map[duckdb.ErrorType]bool
	re    *regexp.Regexp
	fn    func(m []string) *catalog.QueryError
}

func types(ts ...duckdb.ErrorType) map[duckdb.ErrorType]bool {
	out := map[duckdb.ErrorType]bool{}
	for _, t := range ts {
		out[t] = true
	}
	return out
}

func state(code, msg string) *catalog.QueryError {
	return &catalog.QueryError{SQLState: code, Msg: msg}
}

var binder = types(duckdb.ErrorTypeBinder, duckdb.ErrorTypeCatalog)

var errorRules = []errorRule{
	// Undefined columns.
	{binder, regexp.MustCompile(`(?i)^Referenced column "([^"]*)" not found in FROM clause`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42703", Msg: `column "` + m[1] + `" does not exist`, Name: m[1]}
	}},
	{binder, regexp.MustCompile(`(?i)^Column "([^"]*)" referenced that exists in the SELECT clause`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42703", Msg: `column "` + m[1] + `" does not exist`, Name: m[1]}
	}},
	{binder, regexp.MustCompile(`(?i)^(?:Values list|Table|Table Function|Subquery) "([^"]*)" does not have a column named "([^"]*)"`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42703", Msg: "column " + m[1] + "." + m[2] + " does not exist", Name: m[2]}
	}},
	{binder, regexp.MustCompile(`(?i)^Referenced table "([^"]*)" not found`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42P01", Msg: `missing FROM-clause entry for table "` + m[1] + `"`, Name: m[1]}
	}},
	{binder, regexp.MustCompile(`(?i)^Ambiguous reference to column name "([^"]*)"`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42702", Msg: `column reference "` + m[1] + `" is ambiguous`, Name: m[1]}
	}},
	{binder, regexp.MustCompile(`(?i)^Ambiguous reference to table "([^"]*)"`), func(m []string) *catalog.QueryError {
		return state("42712", `table name "`+m[1]+`" specified more than once`)
	}},
	{binder, regexp.MustCompile(`(?i)^Duplicate alias "([^"]*)"`), func(m []string) *catalog.QueryError {
		return state("42712", `table name "`+m[1]+`" specified more than once`)
	}},
	// Grouping and aggregates.
	{binder, regexp.MustCompile(`(?i)^column "([^"]*)" must appear in the GROUP BY clause`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42803", Msg: `column "` + m[1] + `" must appear in the GROUP BY clause or be used in an aggregate function`, Name: m[1]}
	}},
	{binder, regexp.MustCompile(`(?i)^aggregate function calls cannot be nested`), func([]string) *catalog.QueryError {
		return state("42803", "aggregate function calls cannot be nested")
	}},
	{binder, regexp.MustCompile(`(?i)^(WHERE|GROUP BY|JOIN|ON) clause cannot contain aggregates`), func(m []string) *catalog.QueryError {
		return state("42803", "aggregate functions are not allowed in "+strings.ToUpper(m[1]))
	}},
	{binder, regexp.MustCompile(`(?i)^(WHERE|GROUP BY|HAVING|JOIN|ON) clause cannot contain window functions`), func(m []string) *catalog.QueryError {
		return state("42P20", "window functions are not allowed in "+strings.ToUpper(m[1]))
	}},
	{binder, regexp.MustCompile(`(?i)window functions? (?:calls )?cannot be nested`), func([]string) *catalog.QueryError {
		return state("42P20", "window function calls cannot be nested")
	}},
	{binder, regexp.MustCompile(`(?i)^(?:ORDER|GROUP) term out of range - should be between 1 and (\d+)`), func(m []string) *catalog.QueryError {
		return state("42P10", "position is not in select list")
	}},
	{binder, regexp.MustCompile(`(?i)Set operations can only apply to expressions with the same number of result columns`), func([]string) *catalog.QueryError {
		return state("42601", "each UNION query must have the same number of columns")
	}},
	// Functions and operators.
	{binder, regexp.MustCompile(`(?i)^No function matches the given name and argument types '([^(]*)\(([^']*)\)'`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42883", Msg: "function " + m[1] + "(" + pgTypeList(m[2]) + ") does not exist",
			Hint: "No function matches the given name and argument types. You might need to add explicit type casts."}
	}},
	{binder, regexp.MustCompile(`(?i)^Could not choose a best candidate function for the function call "([^(]*)\(([^"]*)\)"`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42725", Msg: "function " + m[1] + "(" + pgTypeList(m[2]) + ") is not unique",
			Hint: "Could not choose a best candidate function. You might need to add explicit type casts."}
	}},
	{binder, regexp.MustCompile(`(?i)^(?:Scalar |Aggregate |Table )?Function with name "?([^" !]*)"? does not exist`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42883", Msg: "function " + m[1] + " does not exist"}
	}},
	{binder, regexp.MustCompile(`(?i)^Cannot compare values of type (.+?) and(?: type)? (.+?) - an explicit cast is required`), func(m []string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "42883", Msg: "operator does not exist: " + pgTypeName(m[1]) + " = " + pgTypeName(m[2]),
			Hint: "No operator matches the given name and argument types. You might need to add explicit type casts."}
	}},
	{binder, regexp.MustCompile(`(?i)^Cannot mix values of type (.+?) and (.+?) in (\w+)`), func(m []string) *catalog.QueryError {
		return state("42804", m[3]+" types "+pgTypeName(m[1])+" and "+pgTypeName(m[2])+" cannot be matched")
	}},
	{binder, regexp.MustCompile(`(?i)^Table with name (\S+) does not exist`), func(m []string) *catalog.QueryError {
		return state("42P01", `relation "`+strings.Trim(m[1], `"!`)+`" does not exist`)
	}},
	// Values.
	{nil, regexp.MustCompile(`(?i)Overflow in (?:addition|subtraction|multiplication|division|negation) of (INT16|INT32|INT64|INT128|UINT\d+)`), func(m []string) *catalog.QueryError {
		return state("22003", intRange(m[1]))
	}},
	{nil, regexp.MustCompile(`(?i)Overflow in division of (-?\d+)`), func(m []string) *catalog.QueryError {
		switch m[1] {
		case "-32768":
			return state("22003", "smallint out of range")
		case "-2147483648":
			return state("22003", "integer out of range")
		}
		return state("22003", "bigint out of range")
	}},
	{nil, regexp.MustCompile(`(?i)out of range for the destination type (INT16|INT32|INT64|INT8)`), func(m []string) *catalog.QueryError {
		return state("22003", intRange(m[1]))
	}},
	{nil, regexp.MustCompile(`(?i)(?:Could not cast value|Value) .* (?:to|for) DECIMAL|Overflow in .*DECIMAL|DECIMAL .*overflow`), func([]string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "22003", Msg: "numeric field overflow"}
	}},
	{nil, regexp.MustCompile(`(?i)cannot take square root of a negative number`), func([]string) *catalog.QueryError {
		return state("2201F", "cannot take square root of a negative number")
	}},
	{nil, regexp.MustCompile(`(?i)cannot take logarithm of (zero|a negative number)`), func(m []string) *catalog.QueryError {
		return state("2201E", "cannot take logarithm of "+m[1])
	}},
	{nil, regexp.MustCompile(`(?i)Could not convert string '(.*)' to (\w+)`), func(m []string) *catalog.QueryError {
		return state("22P02", `invalid input syntax for type `+pgTypeName(m[2])+`: "`+m[1]+`"`)
	}},
	{nil, regexp.MustCompile(`(?i)(?:invalid|Could not parse) (timestamp|date|time|interval)\w*(?: field format)?: "([^"]*)"`), func(m []string) *catalog.QueryError {
		code := "22007"
		if strings.EqualFold(m[1], "interval") {
			code = "22P02"
		}
		return state(code, "invalid input syntax for type "+strings.ToLower(m[1])+`: "`+m[2]+`"`)
	}},
	{nil, regexp.MustCompile(`(?i)date field value out of range: "([^"]*)"|timestamp field value out of range: "([^"]*)"`), func(m []string) *catalog.QueryError {
		return state("22008", "date/time field value out of range: \""+m[1]+m[2]+"\"")
	}},
	{nil, regexp.MustCompile(`(?i)Malformed JSON|JSON .*(?:parse|invalid)`), func([]string) *catalog.QueryError {
		return state("22P02", "invalid input syntax for type json")
	}},
	{nil, regexp.MustCompile(`(?i)(?:More than one row returned by a subquery|subquery returned more than one row)`), func([]string) *catalog.QueryError {
		return state("21000", "more than one row returned by a subquery used as an expression")
	}},
	{nil, regexp.MustCompile(`(?i)like pattern must not end with escape character`), func([]string) *catalog.QueryError {
		return state("22025", "LIKE pattern must not end with escape character")
	}},
	{nil, regexp.MustCompile(`^(missing \)|missing \]|unexpected \)|invalid escape sequence|invalid character class(?: range)?|bad repetition operator|trailing \\|invalid (?:named )?capture group|invalid repetition size|invalid UTF-8|invalid perl operator|no argument for repetition operator|bad named capture group|missing argument to repetition operator)(.*)`), func(m []string) *catalog.QueryError {
		return state("2201B", "invalid regular expression: "+m[1]+m[2])
	}},
	{nil, regexp.MustCompile(`(?i)to type DECIMAL\(\d+,\s*\d+\) failed`), func([]string) *catalog.QueryError {
		return &catalog.QueryError{SQLState: "22003", Msg: "numeric field overflow"}
	}},
	{nil, regexp.MustCompile(`(?i)(?:regex|regular expression)[^:]*: ?(.*)`), func(m []string) *catalog.QueryError {
		return state("2201B", "invalid regular expression: "+cleanMessage(m[1]))
	}},
	{nil, regexp.MustCompile(`(?i)^Invalid Input Error: (.*)`), func(m []string) *catalog.QueryError {
		return state("22023", cleanMessage(m[1]))
	}},
}

func intRange(t string) string {
	switch strings.ToUpper(t) {
	case "INT16", "INT8":
		return "smallint out of range"
	case "INT32":
		return "integer out of range"
	}
	return "bigint out of range"
}

// defaultState is the SQLSTATE of a DuckDB error no rule knows.
func defaultState(t duckdb.ErrorType, msg string) string {
	lower := strings.ToLower(msg)
	switch t {
	case duckdb.ErrorTypeParser, duckdb.ErrorTypeSyntax:
		return "42601"
	case duckdb.ErrorTypeBinder, duckdb.ErrorTypeCatalog:
		switch {
		case strings.Contains(lower, "column"):
			return "42703"
		case strings.Contains(lower, "function"), strings.Contains(lower, "macro"):
			return "42883"
		case strings.Contains(lower, "table"), strings.Contains(lower, "relation"):
			return "42P01"
		}
		return "42804"
	case duckdb.ErrorTypeConversion, duckdb.ErrorTypeInvalidType, duckdb.ErrorTypeMismatchType:
		return "22P02"
	case duckdb.ErrorTypeOutOfRange:
		return "22003"
	case duckdb.ErrorTypeDivideByZero:
		return "22012"
	case duckdb.ErrorTypeInvalidInput:
		return "22023"
	case duckdb.ErrorTypePermission, duckdb.ErrorTypeTransaction:
		return "42501"
	case duckdb.ErrorTypeNotImplemented:
		return "0A000"
	case duckdb.ErrorTypeOutOfMemory:
		return "53200"
	case duckdb.ErrorTypeInterrupt:
		return "57014"
	}
	return "XX000"
}

// duckTypeNames are DuckDB's type names in messages and PostgreSQL's.
var duckTypeNames = map[string]string{
	"BOOLEAN": "boolean", "BOOL": "boolean", "TINYINT": "smallint", "INT8": "smallint", "SMALLINT": "smallint",
	"INT16": "smallint", "INTEGER": "integer", "INT32": "integer", "INT": "integer", "BIGINT": "bigint",
	"INT64": "bigint", "HUGEINT": "numeric", "INT128": "numeric", "UBIGINT": "numeric", "UINTEGER": "bigint",
	"USMALLINT": "integer", "UTINYINT": "smallint", "FLOAT": "real", "REAL": "real", "DOUBLE": "double precision",
	"DECIMAL": "numeric", "VARCHAR": "text", "STRING_LITERAL": "unknown", "INTEGER_LITERAL": "integer",
	"BLOB": "bytea", "DATE": "date", "TIME": "time without time zone", "TIMESTAMP": "timestamp without time zone",
	"TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "TIMESTAMPTZ": "timestamp with time zone",
	"INTERVAL": "interval", "UUID": "uuid", "JSON": "json", "NULL": "unknown", "ANY": "anyelement",
}

// pgTypeName maps a DuckDB type name (DECIMAL(18,3), VARCHAR[], ...).
func pgTypeName(t string) string {
	t = strings.TrimSpace(t)
	if strings.HasSuffix(t, "[]") {
		return pgTypeName(strings.TrimSuffix(t, "[]")) + "[]"
	}
	base := t
	if i := strings.IndexByte(t, '('); i >= 0 {
		base = t[:i]
	}
	if n, ok := duckTypeNames[strings.ToUpper(base)]; ok {
		return n
	}
	return strings.ToLower(t)
}

func pgTypeList(list string) string {
	if strings.TrimSpace(list) == "" {
		return ""
	}
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = pgTypeName(p)
	}
	return strings.Join(parts, ", ")
}

var (
	typeWord   = regexp.MustCompile(`\b(INT16|INT32|INT64|INT128|HUGEINT|UBIGINT|VARCHAR|STRING_LITERAL|INTEGER_LITERAL|DOUBLE|BLOB|TIMESTAMP WITH TIME ZONE|TIMESTAMP_TZ|TIMESTAMPTZ)\b`)
	candidates = regexp.MustCompile(`(?s)\s*(Candidate functions:|Did you mean|Candidate bindings:|Candidates:).*$`)
)

// cleanMessage removes DuckDB's vocabulary from a message no rule
// rewrote: candidate lists, suggestions, type names, the final "!".
func cleanMessage(msg string) string {
	msg = candidates.ReplaceAllString(msg, "")
	msg = typeWord.ReplaceAllStringFunc(msg, pgTypeName)
	msg = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(msg), "!"))
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:]
	}
	return msg
}
