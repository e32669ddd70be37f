package systables

import (
	"encoding/json"
	"fmt"
	"math/big"
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
// the column's OID.
func toWire(oid uint32, v any) any {
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
		return pgtype.Interval{Months: x.Months, Days: x.Days, Microseconds: x.Micros, Valid: true}
	case time.Duration:
		return pgtype.Time{Microseconds: x.Microseconds(), Valid: true}
	case []any:
		elemOID := uint32(oidText)
		for d, o := range arrayOID {
			if o == oid {
				elemOID = scalarOID[d]
			}
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toWire(elemOID, e)
		}
		return out
	case time.Time:
		if oid == oidTimestamptz {
			// PostgreSQL's text form (+00, not Z): drivers such as
			// psycopg2 and pgJDBC parse only that; pgwire decodes it for
			// the binary format.
			return x.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
		}
	case string:
		return x
	case int16:
		if oid == oidText {
			return fmt.Sprint(x)
		}
	}
	return v
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

// decodeByteaText decodes bytea's text form: hex (\x0102) or escape.
func decodeByteaText(b []byte) (any, error) {
	var v []byte
	if err := pgtype.NewMap().Scan(oidBytea, 0, b, &v); err != nil {
		return nil, pgwire.Errorf("22P02", "invalid input syntax for type bytea")
	}
	return v, nil
}
