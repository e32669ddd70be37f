package systables

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// PostgreSQL type OIDs used here.
const (
	oidBool        = 16
	oidBytea       = 17
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidUnknown     = 705
	oidVarchar     = 1043
	oidBpchar      = 1042
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
	oidChar        = 18
	oidRegclass    = 2205
	oidRegtype     = 2206
	oidTextArray   = 1009
	oidInt2Vector  = 22
	oidOIDVector   = 30
	oidACLItem     = 1033
	oidACLArray    = 1034
)

// scalarOID is the PostgreSQL type of a catalog data type.
var scalarOID = map[catalog.DataType]uint32{
	catalog.DataText: oidText, catalog.DataBool: oidBool, catalog.DataInt16: oidInt2, catalog.DataInt32: oidInt4,
	catalog.DataInt64: oidInt8, catalog.DataFloat32: oidFloat4, catalog.DataFloat64: oidFloat8, catalog.DataNumeric: oidNumeric,
	catalog.DataBytes: oidBytea, catalog.DataDate: oidDate, catalog.DataTime: oidTime, catalog.DataTimestamp: oidTimestamp,
	catalog.DataTimestamptz: oidTimestamptz, catalog.DataInterval: oidInterval, catalog.DataUUID: oidUUID, catalog.DataJSON: oidJSON,
}

// arrayOID is the PostgreSQL array type of an element type.
var arrayOID = map[catalog.DataType]uint32{
	catalog.DataText: 1009, catalog.DataBool: 1000, catalog.DataInt16: 1005, catalog.DataInt32: 1007, catalog.DataInt64: 1016,
	catalog.DataFloat32: 1021, catalog.DataFloat64: 1022, catalog.DataNumeric: 1231, catalog.DataBytes: 1001,
	catalog.DataDate: 1182, catalog.DataTime: 1183, catalog.DataTimestamp: 1115, catalog.DataTimestamptz: 1185,
	catalog.DataInterval: 1187, catalog.DataUUID: 2951, catalog.DataJSON: 199,
}

// typeOID returns the PostgreSQL type OID of a column type.
func typeOID(t catalog.ColumnType) uint32 {
	if t.Data == catalog.DataList {
		if o, ok := arrayOID[t.Elem]; ok {
			return o
		}
		return oidTextArray
	}
	if o, ok := scalarOID[t.Data]; ok {
		return o
	}
	return oidText
}

// dataOf maps a PostgreSQL type OID back to a catalog type (for pg_type
// emulation and parameters); ok is false for types Mandate does not carry.
func dataOf(oid uint32) (catalog.ColumnType, bool) {
	for d, o := range scalarOID {
		if o == oid {
			return catalog.ColumnType{Data: d}, true
		}
	}
	for d, o := range arrayOID {
		if o == oid {
			return catalog.ColumnType{Data: catalog.DataList, Elem: d}, true
		}
	}
	switch oid {
	case oidVarchar, oidBpchar, oidName, oidChar, oidUnknown, oidRegclass, oidRegtype:
		return catalog.ColumnType{Data: catalog.DataText}, true
	case oidOID:
		return catalog.ColumnType{Data: catalog.DataInt64}, true
	case oidJSONB:
		return catalog.ColumnType{Data: catalog.DataJSON}, true
	}
	return catalog.ColumnType{}, false
}

// toWire converts an engine value for pgwire's encoder (pgtype.Map) for
// the column's OID. Values whose PostgreSQL text differs from pgtype's
// are given as that text (pgwire decodes a string for the binary format):
// floats (shortest digits, exponent from 1e15), intervals, timestamps with
// time zone (in the session's zone, loc), jsonb (its canonical form).
func toWire(oid uint32, v any, loc *time.Location) any {
	switch x := v.(type) {
	case nil:
		return nil
	case catalog.Decimal:
		if oid == oidText {
			return x.String()
		}
		if x.Unscaled == nil {
			return pgtype.Numeric{Int: big.NewInt(0), Valid: true}
		}
		return pgtype.Numeric{Int: x.Unscaled, Exp: int32(-x.Scale), Valid: true}
	case catalog.Interval:
		return intervalText(x)
	case time.Duration:
		us := x.Microseconds()
		s := fmt.Sprintf("%02d:%02d:%02d", us/3600e6, us/60e6%60, us/1e6%60)
		if frac := us % 1e6; frac != 0 {
			s += strings.TrimRight(fmt.Sprintf(".%06d", frac), "0")
		}
		return s
	case float64:
		if oid == oidFloat8 || oid == oidFloat4 {
			return floatText(x, 64)
		}
	case float32:
		if oid == oidFloat4 || oid == oidFloat8 {
			return floatText(float64(x), 32)
		}
	case []any:
		elemOID := uint32(oidText)
		for d, o := range arrayOID {
			if o == oid {
				elemOID = scalarOID[d]
			}
		}
		out := make([]any, len(x))
		for i, e := range x {
			if f, ok := e.(float64); ok {
				out[i] = f
				continue
			}
			if f, ok := e.(float32); ok {
				out[i] = f
				continue
			}
			out[i] = toWire(elemOID, e, loc)
		}
		return out
	case time.Time:
		if oid == oidTimestamptz {
			// PostgreSQL's text form (+00, not Z): drivers such as
			// psycopg2 and pgJDBC parse only that; pgwire decodes it for
			// the binary format.
			return tstzText(x, loc)
		}
	case string:
		if oid == oidJSONB {
			return jsonbText(x)
		}
		return x
	case int16:
		if oid == oidText {
			return fmt.Sprint(x)
		}
	}
	return v
}

// floatText is PostgreSQL's output of a float: the shortest digits that
// read back to the same value, in exponent form below 1e-4 and from 1e15
// (1e6 for real).
func floatText(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits)
	i := strings.LastIndexByte(e, 'e')
	exp, _ := strconv.Atoi(e[i+1:])
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp < -4 || exp >= limit {
		return e
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// intervalText is PostgreSQL's interval output (IntervalStyle postgres).
func intervalText(iv catalog.Interval) string {
	var b strings.Builder
	prevNeg := false
	field := func(n int64, unit string) {
		if n == 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		if prevNeg && n > 0 {
			b.WriteByte('+')
		}
		fmt.Fprintf(&b, "%d %s", n, unit)
		if n != 1 {
			if unit == "mon" {
				b.WriteByte('s')
			} else {
				b.WriteByte('s')
			}
		}
		prevNeg = n < 0
	}
	years, months := int64(iv.Months/12), int64(iv.Months%12)
	field(years, "year")
	field(months, "mon")
	field(int64(iv.Days), "day")
	if iv.Micros != 0 || b.Len() == 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		us := iv.Micros
		switch {
		case us < 0:
			b.WriteByte('-')
			us = -us
		case prevNeg:
			b.WriteByte('+')
		}
		h, rest := us/3600e6, us%3600e6
		m, rest := rest/60e6, rest%60e6
		sec, frac := rest/1e6, rest%1e6
		fmt.Fprintf(&b, "%02d:%02d:%02d", h, m, sec)
		if frac != 0 {
			b.WriteString(strings.TrimRight(fmt.Sprintf(".%06d", frac), "0"))
		}
	}
	return b.String()
}

// tstzText is PostgreSQL's output of a timestamp with time zone in loc
// (DateStyle ISO).
func tstzText(t time.Time, loc *time.Location) string {
	if loc == nil {
		loc = time.UTC
	}
	t = t.In(loc)
	_, off := t.Zone()
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	s := t.Format("2006-01-02 15:04:05.999999") + string(sign) + fmt.Sprintf("%02d", off/3600)
	if off%3600 != 0 {
		s += fmt.Sprintf(":%02d", off%3600/60)
		if off%60 != 0 {
			s += fmt.Sprintf(":%02d", off%60)
		}
	}
	if t.Year() <= 0 {
		// Year 0 is 1 BC.
		s = fmt.Sprintf("%04d", 1-t.Year()) + s[strings.IndexByte(s, '-'):] + " BC"
	}
	return s
}

// jsonbText is jsonb's canonical text: object keys sorted (shorter
// first, then bytewise) and unique (the last wins), ", " and ": " between
// items, numbers as numeric writes them.
func jsonbText(s string) string {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return s
	}
	var b strings.Builder
	writeJSONB(&b, v)
	return b.String()
}

func writeJSONB(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case json.Number:
		b.WriteString(jsonbNumber(string(x)))
	case string:
		writeJSONString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeJSONB(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if len(keys[i]) != len(keys[j]) {
				return len(keys[i]) < len(keys[j])
			}
			return keys[i] < keys[j]
		})
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writeJSONString(b, k)
			b.WriteString(": ")
			writeJSONB(b, x[k])
		}
		b.WriteByte('}')
	}
}

// jsonbNumber is a JSON number as jsonb keeps it (a numeric): exponents
// are expanded, the scale written is kept.
func jsonbNumber(n string) string {
	if !strings.ContainsAny(n, "eE") {
		return n
	}
	r, ok := new(big.Rat).SetString(n)
	if !ok {
		return n
	}
	return r.FloatString(numericScale(n))
}

// writeJSONString writes a JSON string as PostgreSQL escapes it.
func writeJSONString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// fromWire decodes a bound parameter for the engine: text-format values
// stay strings (the engine converts them to the parameter's type, as
// PostgreSQL does with an untyped literal); binary ones are decoded by
// their OID.
func fromWire(m *pgtype.Map, p pgwire.Param) (any, error) {
	if p.Value == nil {
		return nil, nil
	}
	if p.Format == 0 {
		if p.OID == oidBytea {
			return decodeByteaText(p.Value)
		}
		return string(p.Value), nil
	}
	bad := func(err error) error {
		return pgwire.Errorf("22P03", "incorrect binary data format in bind parameter (type OID %d): %v", p.OID, err)
	}
	switch p.OID {
	case oidText, oidVarchar, oidBpchar, oidName, oidUnknown, oidJSON:
		return string(p.Value), nil
	case oidJSONB:
		if len(p.Value) == 0 || p.Value[0] != 1 {
			return nil, bad(fmt.Errorf("unsupported jsonb version"))
		}
		return string(p.Value[1:]), nil
	case oidBytea:
		return append([]byte(nil), p.Value...), nil
	}
	t, ok := m.TypeForOID(p.OID)
	if !ok {
		return nil, pgwire.Errorf("0A000", "binary parameters of type OID %d are not supported", p.OID)
	}
	v, err := t.Codec.DecodeValue(m, p.OID, 1, p.Value)
	if err != nil {
		return nil, bad(err)
	}
	switch x := v.(type) {
	case pgtype.Numeric:
		b, err := x.MarshalJSON()
		if err != nil {
			return nil, bad(err)
		}
		return strings.Trim(string(b), `"`), nil
	case pgtype.Interval:
		return catalog.Interval{Months: x.Months, Days: x.Days, Micros: x.Microseconds}, nil
	case pgtype.Time:
		return fmt.Sprintf("%02d:%02d:%02d.%06d", x.Microseconds/3600e6, x.Microseconds/60e6%60, x.Microseconds/1e6%60, x.Microseconds%1e6), nil
	case int64, int32, int16, float32, float64, bool, time.Time, [16]byte, string:
		return x, nil
	case uint32:
		return int64(x), nil
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b), nil
	}
	return nil, pgwire.Errorf("0A000", "binary parameters of type OID %d are not supported", p.OID)
}

// decodeByteaText decodes bytea's text form: hex (\x0102) or escape
// (bytes as they are, \\ for a backslash, \ooo in octal).
func decodeByteaText(b []byte) (any, error) {
	bad := pgwire.Errorf("22P02", "invalid input syntax for type bytea")
	if len(b) >= 2 && b[0] == '\\' && (b[1] == 'x' || b[1] == 'X') {
		var v []byte
		if err := pgtype.NewMap().Scan(oidBytea, 0, b, &v); err != nil {
			return nil, bad
		}
		return v, nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(b) && b[i+1] >= '0' && b[i+1] <= '3' && b[i+2] >= '0' && b[i+2] <= '7' && b[i+3] >= '0' && b[i+3] <= '7':
			out = append(out, (b[i+1]-'0')<<6|(b[i+2]-'0')<<3|(b[i+3]-'0'))
			i += 3
		default:
			return nil, bad
		}
	}
	return out, nil
}
