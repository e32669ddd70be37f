package systables

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	pg "github.com/pganalyze/pg_query_go/v6"
)

// Casts and literals. A literal is converted here, with PostgreSQL's
// input rules (booleans' spellings, strict integers, timestamps in the
// session's time zone, intervals' units, arrays' braces); casts of
// expressions are written for the engine with PostgreSQL's rules where
// they differ (text to integer is strict, a timestamp with time zone
// converts in the session's time zone, varchar(n) truncates).

// castTarget resolves a type name.
func castTarget(tn *pg.TypeName) (uint32, error) {
	name := typeNameOf(tn)
	t, ok := pgTypeOIDs[name]
	if !ok {
		return 0, notSupported("type " + name)
	}
	if len(tn.ArrayBounds) > 0 {
		a := arrayOf(t)
		if a == 0 {
			return 0, notSupported("arrays of " + name)
		}
		return a, nil
	}
	return t, nil
}

func typmods(tn *pg.TypeName) []int {
	var out []int
	for _, m := range tn.Typmods {
		if c := m.GetAConst(); c != nil && c.GetIval() != nil {
			out = append(out, int(c.GetIval().Ival))
		}
	}
	return out
}

func (d *deparser) cast(e ex, tn *pg.TypeName) (ex, error) {
	t, err := castTarget(tn)
	if err != nil {
		return ex{}, err
	}
	mods := typmods(tn)
	var out ex
	switch {
	case e.lit != nil || e.null || e.param > 0:
		if t == oidNumeric && len(mods) > 0 && e.lit != nil {
			out = ex{sql: quoteString(*e.lit), t: oidText}
			break
		}
		out = d.coerce(e, t)
	default:
		if out, err = d.convert(e, t); err != nil {
			return ex{}, err
		}
	}
	return d.applyTypmod(out, t, mods)
}

func (d *deparser) applyTypmod(e ex, t uint32, mods []int) (ex, error) {
	if len(mods) == 0 {
		return ex{sql: e.sql, t: t, num: e.num}, nil
	}
	switch t {
	case oidVarchar:
		return ex{sql: "left(" + e.sql + ", " + strconv.Itoa(mods[0]) + ")", t: t}, nil
	case oidBpchar:
		return ex{sql: "rpad(left(" + e.sql + ", " + strconv.Itoa(mods[0]) + "), " + strconv.Itoa(mods[0]) + ", ' ')", t: t}, nil
	case oidNumeric:
		p, s := mods[0], 0
		if len(mods) > 1 {
			s = mods[1]
		}
		if p < 1 || p > 1000 {
			return ex{}, errorf("22023", "NUMERIC precision %d must be between 1 and 1000", p)
		}
		if s < 0 || s > p {
			return ex{}, errorf("22023", "NUMERIC scale %d must be between 0 and precision %d", s, p)
		}
		if p > 38 {
			e := notSupported(fmt.Sprintf("numeric(%d,%d)", p, s))
			e.Detail = "The query engine's decimals have at most 38 digits."
			return ex{}, e
		}
		return ex{sql: "CAST(" + e.sql + " AS DECIMAL(" + strconv.Itoa(p) + "," + strconv.Itoa(s) + "))", t: t}, nil
	case oidTimestamp, oidTimestamptz:
		if p := mods[0]; p >= 0 && p < 6 {
			// Rounded to p fractional digits.
			f := strconv.Itoa(int(math.Pow10(6 - p)))
			sql := "make_timestamp(CAST(round(CAST(epoch_us(" + e.sql + ") AS DOUBLE) / " + f + ") * " + f + " AS BIGINT))"
			if t == oidTimestamptz {
				sql = "CAST(" + sql + " AS TIMESTAMPTZ)"
			}
			return ex{sql: sql, t: t}, nil
		}
		return ex{sql: e.sql, t: t}, nil
	case oidTime, oidInterval:
		return ex{sql: e.sql, t: t}, nil
	}
	return ex{sql: e.sql, t: t}, nil
}

// convert casts a typed expression.
func (d *deparser) convert(e ex, t uint32) (ex, error) {
	from := e.t
	if from == t {
		return ex{sql: e.sql, t: t, num: e.num}, nil
	}
	x := e.sql
	out := func(sql string) (ex, error) { return ex{sql: sql, t: t}, nil }
	switch {
	case from == 0:
		// A parameter or an engine function: the cast types it.
		return out("CAST(" + x + " AS " + engineType(t) + ")")
	case isStringOID(t):
		return out(d.asText(e))
	case isIntOID(t) && isStringOID(from):
		// PostgreSQL's integer input: optional sign and digits, with
		// surrounding white space (the engine would round "1.5").
		return out(fmt.Sprintf("(CASE WHEN %s IS NULL THEN NULL WHEN regexp_full_match(%s, '\\s*[-+]?[0-9]+\\s*') THEN CAST(%s AS %s) ELSE %s END)",
			x, x, x, engineType(t), raiseExpr("22P02", "'invalid input syntax for type "+typeDisplay(t)+": \"' || "+x+" || '\"'")))
	case t == oidBool && isStringOID(from):
		return out(fmt.Sprintf("(CASE lower(trim(%s)) WHEN 't' THEN true WHEN 'tr' THEN true WHEN 'tru' THEN true WHEN 'true' THEN true WHEN 'y' THEN true WHEN 'ye' THEN true WHEN 'yes' THEN true WHEN 'on' THEN true WHEN '1' THEN true WHEN 'f' THEN false WHEN 'fa' THEN false WHEN 'fal' THEN false WHEN 'fals' THEN false WHEN 'false' THEN false WHEN 'n' THEN false WHEN 'no' THEN false WHEN 'of' THEN false WHEN 'off' THEN false WHEN '0' THEN false ELSE CASE WHEN %s IS NULL THEN NULL ELSE %s END END)",
			x, x, raiseExpr("22P02", "'invalid input syntax for type boolean: \"' || "+x+" || '\"'")))
	case t == oidTimestamptz && from == oidTimestamp, t == oidTimestamptz && from == oidDate:
		return out(d.fromLocal(x))
	case t == oidTimestamp && from == oidTimestamptz:
		return out(d.local(x))
	case t == oidDate && from == oidTimestamptz:
		return out("CAST(" + d.local(x) + " AS DATE)")
	case t == oidTime && from == oidTimestamptz:
		return out("CAST(" + d.local(x) + " AS TIME)")
	case t == oidTimestamptz && isStringOID(from):
		if d.utc() {
			return out("CAST(" + x + " AS TIMESTAMPTZ)")
		}
		return out("(CASE WHEN regexp_matches(" + x + ", '(Z|[+-][0-9]{1,2}(:?[0-9]{2})?)\\s*$') THEN CAST(" + x + " AS TIMESTAMPTZ) ELSE " +
			d.fromLocal("CAST("+x+" AS TIMESTAMP)") + " END)")
	case t == oidNumeric && isFloatOID(from):
		return out("CAST(" + x + " AS DECIMAL(38,15))")
	case t == oidNumeric && isIntOID(from):
		return out("CAST(" + x + " AS DECIMAL(38,0))")
	case t == oidNumeric && isStringOID(from):
		return out("CAST(" + x + " AS DECIMAL(38,18))")
	case t == oidJSONB && from == oidJSON, t == oidJSON && from == oidJSONB:
		return out(x)
	case t == oidOID && isIntOID(from):
		return out("CAST(" + x + " AS BIGINT)")
	case isIntOID(t) && from == oidBool:
		if t != oidInt4 {
			return ex{}, errorf("42846", "cannot cast type boolean to %s", typeDisplay(t))
		}
		return out("CAST(" + x + " AS INTEGER)")
	case t == oidBool && isIntOID(from):
		if from != oidInt4 {
			return ex{}, errorf("42846", "cannot cast type %s to boolean", typeDisplay(from))
		}
		return out("(" + x + " <> 0)")
	case t == oidBool && from != 0 && from != oidBool && !isStringOID(from) && !isJSONOID(from):
		return ex{}, errorf("42846", "cannot cast type %s to boolean", typeDisplay(from))
	case isArrayOID(t) && isArrayOID(from):
		return out("CAST(" + x + " AS " + engineType(t) + ")")
	case isNumberOID(t) && (isTimeOID(from) || from == oidInterval), isTimeOID(t) && isNumberOID(from):
		return ex{}, errorf("42846", "cannot cast type %s to %s", typeDisplay(from), typeDisplay(t))
	case isJSONOID(from) && isNumberOID(t):
		return out("CAST(json_extract_string(" + x + ", '$') AS " + engineType(t) + ")")
	case isJSONOID(from) && t == oidBool:
		return out("CAST(json_extract_string(" + x + ", '$') AS BOOLEAN)")
	}
	return out("CAST(" + x + " AS " + engineType(t) + ")")
}

// tstzText writes a timestamp with time zone as PostgreSQL's output does
// (ISO, in the session's time zone, "+00" or "-04" or "+05:30").
func (d *deparser) tstzText(x string) string {
	if d.utc() {
		return "CAST(" + x + " AS VARCHAR)"
	}
	local := d.local(x)
	off := "CAST(epoch(" + local + ") - epoch(" + x + ") AS BIGINT)"
	return "(CAST(" + local + " AS VARCHAR) || CASE WHEN " + off + " < 0 THEN '-' ELSE '+' END || lpad(CAST(abs(" + off +
		") // 3600 AS VARCHAR), 2, '0') || CASE WHEN abs(" + off + ") % 3600 <> 0 THEN ':' || lpad(CAST(abs(" + off +
		") % 3600 // 60 AS VARCHAR), 2, '0') ELSE '' END)"
}

// literal converts the text of an untyped literal to type t.
func (d *deparser) literal(s string, t uint32) (ex, error) {
	trimmed := strings.TrimSpace(s)
	switch t {
	case oidText, oidVarchar, oidName, oidBpchar, oidUnknown:
		return ex{sql: quoteString(s), t: t, lit: nil}, nil
	case oidChar:
		r := []rune(s)
		if len(r) > 1 {
			r = r[:1]
		}
		return ex{sql: quoteString(string(r)), t: t}, nil
	case oidBool:
		v, ok := parseBool(trimmed)
		if !ok {
			return ex{}, invalidInput(t, s)
		}
		return ex{sql: strconv.FormatBool(v), t: t}, nil
	case oidInt2, oidInt4, oidInt8, oidOID:
		bits := map[uint32]int{oidInt2: 16, oidInt4: 32, oidInt8: 64, oidOID: 33}[t]
		if !isIntText(trimmed) || strings.HasPrefix(trimmed, "+-") {
			if strings.HasPrefix(trimmed, "+") && isIntText(trimmed[1:]) {
				trimmed = trimmed[1:]
			} else {
				return ex{}, invalidInput(t, s)
			}
		}
		i, err := strconv.ParseInt(trimmed, 10, bits)
		if err != nil {
			return ex{}, &wireErr{"22003", fmt.Sprintf("value %q is out of range for type %s", s, typeDisplay(t))}
		}
		sql := strconv.FormatInt(i, 10)
		if i < 0 {
			sql = "(" + sql + ")"
		}
		return ex{sql: "CAST(" + sql + " AS " + engineType(t) + ")", t: t, num: strconv.FormatInt(i, 10)}, nil
	case oidNumeric:
		switch strings.ToLower(trimmed) {
		case "nan", "infinity", "-infinity", "inf", "-inf", "+infinity":
			return ex{}, notSupported("numeric " + trimmed + " (the query engine's decimals have none)")
		}
		r, ok := new(big.Rat).SetString(trimmed)
		if !ok || strings.ContainsAny(trimmed, "/ ") {
			return ex{}, invalidInput(t, s)
		}
		return ex{sql: decimalSQL(r, numericScale(trimmed)), t: t, num: trimmed}, nil
	case oidFloat4, oidFloat8:
		f, ok := parseFloat(trimmed, t == oidFloat4)
		if !ok {
			if _, err := strconv.ParseFloat(trimmed, 64); err != nil && strings.Contains(err.Error(), "range") {
				return ex{}, &wireErr{"22003", fmt.Sprintf("%q is out of range for type %s", trimmed, typeDisplay(t))}
			}
			return ex{}, invalidInput(t, s)
		}
		var lit string
		switch {
		case math.IsNaN(f):
			lit = "'nan'"
		case math.IsInf(f, 1):
			lit = "'inf'"
		case math.IsInf(f, -1):
			lit = "'-inf'"
		default:
			lit = quoteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
		return ex{sql: "CAST(" + lit + " AS " + engineType(t) + ")", t: t, num: strconv.FormatFloat(f, 'g', -1, 64)}, nil
	case oidJSON, oidJSONB:
		if !json.Valid([]byte(s)) {
			return ex{}, &wireErr{"22P02", "invalid input syntax for type json"}
		}
		return ex{sql: "CAST(" + quoteString(s) + " AS JSON)", t: t}, nil
	case oidUUID:
		u, err := uuid.Parse(trimmed)
		if err != nil {
			return ex{}, invalidInput(t, s)
		}
		return ex{sql: "CAST(" + quoteString(u.String()) + " AS UUID)", t: t}, nil
	case oidDate:
		return d.dateLiteral(s)
	case oidTimestamp, oidTimestamptz:
		return d.timestampLiteral(s, t)
	case oidTime:
		return ex{sql: "CAST(" + quoteString(trimmed) + " AS TIME)", t: t}, nil
	case oidInterval:
		iv, err := parseInterval(s)
		if err != nil {
			return ex{}, err
		}
		return ex{sql: iv, t: t}, nil
	case oidBytea:
		v, err := decodeByteaText([]byte(s))
		if err != nil {
			return ex{}, &wireErr{"22P02", "invalid input syntax for type bytea"}
		}
		return ex{sql: "CAST(" + quoteString(blobLiteral(v.([]byte))) + " AS BLOB)", t: t}, nil
	}
	if e := elemOID(t); e != 0 {
		elems, err := parseArrayLiteral(s)
		if err != nil {
			return ex{}, err
		}
		parts := make([]string, len(elems))
		for i, el := range elems {
			if el == nil {
				parts[i] = "NULL"
				continue
			}
			v, err := d.literal(*el, e)
			if err != nil {
				return ex{}, err
			}
			parts[i] = v.sql
		}
		return ex{sql: "CAST([" + strings.Join(parts, ", ") + "] AS " + engineType(t) + ")", t: t}, nil
	}
	return ex{sql: "CAST(" + quoteString(s) + " AS " + engineType(t) + ")", t: t}, nil
}

// parseBool is PostgreSQL's boolean input.
func parseBool(s string) (bool, bool) {
	l := strings.ToLower(s)
	if l == "" {
		return false, false
	}
	switch {
	case l == "1":
		return true, true
	case l == "0":
		return false, true
	case strings.HasPrefix("true", l), strings.HasPrefix("yes", l):
		return true, true
	case strings.HasPrefix("false", l), strings.HasPrefix("no", l):
		return false, true
	case l == "on":
		return true, true
	case l == "of" || l == "off":
		return false, true
	}
	return false, false
}

func parseFloat(s string, single bool) (float64, bool) {
	switch strings.ToLower(s) {
	case "nan":
		return math.NaN(), true
	case "infinity", "+infinity", "inf", "+inf":
		return math.Inf(1), true
	case "-infinity", "-inf":
		return math.Inf(-1), true
	}
	bits := 64
	if single {
		bits = 32
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil || strings.ContainsAny(s, "xXpP_") {
		return 0, false
	}
	return f, true
}

func (d *deparser) location() *time.Location {
	if loc, err := time.LoadLocation(d.tz); err == nil && d.tz != "Local" {
		return loc
	}
	return time.UTC
}

// dateLiteral reads a date: ISO (with an optional time, ignored), or
// today, tomorrow, yesterday, epoch in the session's time zone.
func (d *deparser) dateLiteral(s string) (ex, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	switch l {
	case "today":
		return ex{sql: "CAST(" + d.local("now()") + " AS DATE)", t: oidDate}, nil
	case "tomorrow":
		return ex{sql: "CAST(CAST(" + d.local("now()") + " AS DATE) + 1 AS DATE)", t: oidDate}, nil
	case "yesterday":
		return ex{sql: "CAST(CAST(" + d.local("now()") + " AS DATE) - 1 AS DATE)", t: oidDate}, nil
	case "epoch":
		return ex{sql: "DATE '1970-01-01'", t: oidDate}, nil
	case "infinity", "-infinity":
		return ex{sql: "CAST(" + quoteString(l) + " AS DATE)", t: oidDate}, nil
	}
	ts, _, ok := parseISOTimestamp(l)
	if !ok {
		return ex{}, dateError(oidDate, s)
	}
	return ex{sql: "DATE '" + ts.Format("2006-01-02") + "'", t: oidDate}, nil
}

// timestampLiteral reads a timestamp: ISO date and time with an optional
// zone (used only with time zone; without one the session's zone
// applies), or now, today, tomorrow, yesterday, epoch.
func (d *deparser) timestampLiteral(s string, t uint32) (ex, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	loc := d.location()
	mk := func(local time.Time) ex {
		if t == oidTimestamp {
			return ex{sql: "TIMESTAMP '" + local.Format("2006-01-02 15:04:05.999999") + "'", t: t}
		}
		return ex{sql: "TIMESTAMPTZ '" + local.UTC().Format("2006-01-02 15:04:05.999999") + "+00'", t: t}
	}
	switch l {
	case "now":
		if t == oidTimestamp {
			return ex{sql: d.local("now()"), t: t}, nil
		}
		return ex{sql: "CAST(now() AS TIMESTAMPTZ)", t: t}, nil
	case "today", "tomorrow", "yesterday":
		days := map[string]string{"today": "0", "tomorrow": "1", "yesterday": "-1"}[l]
		local := "CAST(CAST(" + d.local("now()") + " AS DATE) + " + days + " AS TIMESTAMP)"
		if t == oidTimestamp {
			return ex{sql: local, t: t}, nil
		}
		return ex{sql: d.fromLocal(local), t: t}, nil
	case "epoch":
		return mk(time.Unix(0, 0).UTC()), nil
	case "infinity", "-infinity":
		return ex{sql: "CAST(" + quoteString(l) + " AS " + engineType(t) + ")", t: t}, nil
	}
	ts, zone, ok := parseISOTimestamp(l)
	if !ok {
		return ex{}, dateError(t, s)
	}
	if t == oidTimestamp {
		return mk(ts), nil
	}
	if zone != nil {
		return mk(time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), ts.Second(), ts.Nanosecond(), zone)), nil
	}
	return mk(pgLocalTime(ts, loc)), nil
}

var isoDateShape = regexp.MustCompile(`^\s*\d{4}-\d{1,2}-\d{1,2}`)

// dateError is PostgreSQL's error for a date or timestamp it cannot
// read: out of range when it has the shape of one (2024-02-30).
func dateError(t uint32, s string) error {
	if m := isoDateShape.FindString(s); m != "" {
		if _, err := time.Parse("2006-1-2", strings.TrimSpace(m)); err != nil {
			return &wireErr{"22008", fmt.Sprintf("date/time field value out of range: %q", s)}
		}
	}
	return &wireErr{"22007", fmt.Sprintf("invalid input syntax for type %s: %q", typeDisplay(t), s)}
}

// pgLocalTime reads wall-clock fields in loc as PostgreSQL does: a time
// skipped by a daylight-saving change is read with the offset before it,
// a repeated one as the later (standard) time.
func pgLocalTime(ts time.Time, loc *time.Location) time.Time {
	guess := time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), ts.Second(), ts.Nanosecond(), loc)
	// Offsets in effect a day before and after; PostgreSQL resolves with
	// the offset before the transition for gaps and the standard one
	// (after the fall-back transition) for repeated hours.
	wall := time.Date(ts.Year(), ts.Month(), ts.Day(), ts.Hour(), ts.Minute(), ts.Second(), ts.Nanosecond(), time.UTC)
	_, offBefore := guess.Add(-24 * time.Hour).Zone()
	_, offAfter := guess.Add(24 * time.Hour).Zone()
	if offBefore == offAfter {
		return guess
	}
	before := wall.Add(-time.Duration(offBefore) * time.Second)
	after := wall.Add(-time.Duration(offAfter) * time.Second)
	_, ob := before.In(loc).Zone()
	_, oa := after.In(loc).Zone()
	switch {
	case ob == offBefore && oa == offAfter: // repeated: both readings exist
		if offAfter < offBefore {
			return after
		}
		return before
	case ob == offBefore:
		return before
	case oa == offAfter:
		return after
	}
	return before // skipped: the offset before the transition
}

// parseISOTimestamp reads YYYY-MM-DD[( |T)HH:MM[:SS[.frac]]][zone].
func parseISOTimestamp(s string) (time.Time, *time.Location, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 10 {
		return time.Time{}, nil, false
	}
	date, rest := s[:10], strings.TrimSpace(s[10:])
	day, err := time.Parse("2006-01-02", date)
	if err != nil {
		return time.Time{}, nil, false
	}
	rest = strings.TrimPrefix(rest, "t")
	rest = strings.TrimSpace(rest)
	var zone *time.Location
	// A trailing zone: z, utc, +hh, +hh:mm, +hhmm.
	if strings.HasSuffix(rest, "z") || strings.HasSuffix(rest, " utc") || rest == "utc" {
		zone = time.UTC
		rest = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(rest, "z"), "utc"))
	} else if i := strings.LastIndexAny(rest, "+-"); i >= 0 {
		off := rest[i:]
		sign := 1
		if off[0] == '-' {
			sign = -1
		}
		digits := strings.ReplaceAll(off[1:], ":", "")
		if len(digits) >= 1 && len(digits) <= 4 && isIntText(digits) {
			var h, m int
			if len(digits) <= 2 {
				h, _ = strconv.Atoi(digits)
			} else {
				h, _ = strconv.Atoi(digits[:len(digits)-2])
				m, _ = strconv.Atoi(digits[len(digits)-2:])
			}
			zone = time.FixedZone("", sign*(h*3600+m*60))
			rest = strings.TrimSpace(rest[:i])
		} else {
			return time.Time{}, nil, false
		}
	}
	if rest == "" {
		return day, zone, true
	}
	var h, m, sec, nsec int
	parts := strings.Split(rest, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return time.Time{}, nil, false
	}
	var err1, err2 error
	h, err1 = strconv.Atoi(parts[0])
	m, err2 = strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || h > 24 || m > 59 {
		return time.Time{}, nil, false
	}
	if len(parts) == 3 {
		secPart := parts[2]
		frac := ""
		if i := strings.IndexByte(secPart, '.'); i >= 0 {
			secPart, frac = secPart[:i], secPart[i+1:]
		}
		if sec, err = strconv.Atoi(secPart); err != nil || sec > 60 {
			return time.Time{}, nil, false
		}
		if frac != "" {
			if !isIntText(frac) {
				return time.Time{}, nil, false
			}
			// Microseconds, rounded as PostgreSQL rounds.
			f, _ := strconv.ParseFloat("0."+frac, 64)
			us := math.Round(f * 1e6)
			nsec = int(us) * 1000
		}
	}
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second +
		time.Duration(nsec)), zone, true
}

// parseInterval reads PostgreSQL's interval input (units, clock times,
// "ago", "@") and writes it as the engine's exact interval.
func parseInterval(s string) (string, error) {
	bad := func() (string, error) { return "", invalidInput(oidInterval, s) }
	f := strings.Fields(strings.ToLower(strings.TrimSpace(s)))
	if len(f) == 0 {
		return bad()
	}
	if strings.HasPrefix(f[0], "p") && len(f) == 1 {
		return "CAST(" + quoteString(s) + " AS INTERVAL)", nil // ISO 8601: the engine reads it
	}
	var months, days, micros float64
	ago := false
	for i := 0; i < len(f); i++ {
		tok := f[i]
		if tok == "@" {
			continue
		}
		if tok == "ago" {
			ago = true
			continue
		}
		if strings.Contains(tok, ":") {
			neg := strings.HasPrefix(tok, "-")
			parts := strings.Split(strings.TrimLeft(tok, "+-"), ":")
			if len(parts) > 3 {
				return bad()
			}
			var us float64
			mult := []float64{3600e6, 60e6, 1e6}
			if len(parts) == 2 && strings.Contains(parts[1], ".") {
				mult = []float64{60e6, 1e6} // mm:ss.f
			}
			for j, p := range parts {
				v, err := strconv.ParseFloat(p, 64)
				if err != nil || v < 0 {
					return bad()
				}
				us += v * mult[j]
			}
			if neg {
				us = -us
			}
			micros += us
			continue
		}
		num, unit := tok, ""
		// "1day", "2h"
		j := 0
		for j < len(tok) && (tok[j] >= '0' && tok[j] <= '9' || tok[j] == '.' || tok[j] == '-' || tok[j] == '+') {
			j++
		}
		if j < len(tok) {
			num, unit = tok[:j], tok[j:]
		} else if i+1 < len(f) && !strings.ContainsAny(f[i+1][:1], "0123456789+-.") && f[i+1] != "ago" {
			unit = f[i+1]
			i++
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad()
		}
		switch strings.TrimSuffix(unit, "s") {
		case "", "second", "sec", "s":
			micros += v * 1e6
		case "microsecond", "u", "usec", "us", "microsecon":
			micros += v
		case "millisecond", "m", "msec", "ms", "millisecon":
			if unit == "m" {
				micros += v * 60e6 // "m" is minutes
			} else {
				micros += v * 1e3
			}
		case "minute", "min", "mi":
			micros += v * 60e6
		case "hour", "h", "hr":
			micros += v * 3600e6
		case "day", "d":
			whole := math.Trunc(v)
			days += whole
			micros += (v - whole) * 86400e6
		case "week", "w":
			d := v * 7
			whole := math.Trunc(d)
			days += whole
			micros += (d - whole) * 86400e6
		case "month", "mon":
			whole := math.Trunc(v)
			months += whole
			rest := (v - whole) * 30
			wd := math.Trunc(rest)
			days += wd
			micros += (rest - wd) * 86400e6
		case "year", "y", "yr":
			months += math.Round(v * 12)
		case "decade", "dec":
			months += math.Round(v * 120)
		case "century", "centurie", "c", "cent":
			months += math.Round(v * 1200)
		case "millennium", "millennia", "mil":
			months += math.Round(v * 12000)
		default:
			return bad()
		}
	}
	if ago {
		months, days, micros = -months, -days, -micros
	}
	return fmt.Sprintf("(to_months(%d) + to_days(%d) + to_microseconds(CAST(%d AS BIGINT)))",
		int64(months), int64(days), int64(math.Round(micros))), nil
}

// parseArrayLiteral reads a one-dimensional array literal '{a,"b c",NULL}'.
func parseArrayLiteral(s string) ([]*string, error) {
	bad := func() ([]*string, error) {
		return nil, &wireErr{"22P02", fmt.Sprintf("malformed array literal: %q", s)}
	}
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return bad()
	}
	body := s[1 : len(s)-1]
	var out []*string
	if strings.TrimSpace(body) == "" {
		return []*string{}, nil
	}
	i := 0
	for {
		for i < len(body) && body[i] == ' ' {
			i++
		}
		var b strings.Builder
		quoted := false
		if i < len(body) && body[i] == '"' {
			quoted = true
			i++
			for {
				if i >= len(body) {
					return bad()
				}
				c := body[i]
				if c == '\\' && i+1 < len(body) {
					b.WriteByte(body[i+1])
					i += 2
					continue
				}
				if c == '"' {
					i++
					break
				}
				b.WriteByte(c)
				i++
			}
		} else {
			for i < len(body) && body[i] != ',' {
				c := body[i]
				if c == '{' || c == '"' {
					return nil, notSupported("multi-dimensional or malformed array literals")
				}
				if c == '\\' && i+1 < len(body) {
					b.WriteByte(body[i+1])
					i += 2
					continue
				}
				b.WriteByte(c)
				i++
			}
		}
		v := b.String()
		if !quoted {
			v = strings.TrimSpace(v)
			if strings.EqualFold(v, "null") {
				out = append(out, nil)
				goto next
			}
		}
		out = append(out, &v)
	next:
		for i < len(body) && body[i] == ' ' {
			i++
		}
		if i >= len(body) {
			return out, nil
		}
		if body[i] != ',' {
			return bad()
		}
		i++
	}
}
