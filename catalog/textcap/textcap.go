// Package textcap bounds text that comes from requests before it is kept:
// in the audit log (catalog.AuditEvent.Validate caps every field with
// String and request_params with JSONStrings) and in the server log
// (LogWriter). A capped text ends with a marker that says how much was
// cut, so a reader can tell a cut value from a short one.
//
// It sits under catalog, the bottom layer, so that every package may use it.
package textcap

import (
	"io"
	"strconv"
	"unicode/utf8"
)

// DefaultLogField bounds each string value of a server log line
// (LogWriter's default).
const DefaultLogField = 1024

// marker returns the suffix that replaces cut bytes: "…[cut N bytes]".
func marker(cut int) string { return "…[cut " + strconv.Itoa(cut) + " bytes]" }

// String returns s if it is at most limit bytes long, else a prefix of s
// (cut on a UTF-8 boundary) followed by the marker, limit bytes at most in
// all. A limit below 32 cuts without a marker.
func String(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	if limit < 32 {
		return s[:runeStart(s, limit)]
	}
	// The marker's length depends on the number it shows; reserve room
	// for the largest (the whole of s cut).
	keep := limit - len(marker(len(s)))
	keep = runeStart(s, keep)
	return s[:keep] + marker(len(s)-keep)
}

// runeStart moves n back to the start of the UTF-8 sequence it falls in
// (n itself when s[n] starts one), so that s[:n] does not split a rune.
func runeStart(s string, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for i := 0; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return n
}

// JSONStrings caps every string literal of the JSON text doc (keys and
// values) whose escaped content is longer than limit bytes (at least 32): it
// keeps a prefix, never cutting an escape sequence or a UTF-8 sequence, and
// appends the marker. Valid JSON stays valid JSON. It returns doc itself
// when nothing is cut. Any text is accepted: quotes delimit strings as in
// JSON, and an unterminated string is capped like a terminated one.
func JSONStrings(doc []byte, limit int) []byte { return capStrings(doc, limit, nil) }

// capStrings is JSONStrings, except that the value of a key for which
// exempt is true is not capped.
func capStrings(doc []byte, limit int, exempt func(key []byte) bool) []byte {
	if len(doc) <= limit {
		return doc
	}
	limit = max(limit, 32)
	var out []byte
	last := 0     // doc[last:] is not yet copied to out
	skip := false // the next string is the value of an exempt key
	for i := 0; i < len(doc); i++ {
		if doc[i] != '"' {
			continue
		}
		start := i + 1
		j := start
		for j < len(doc) && doc[j] != '"' {
			if doc[j] == '\\' {
				j++
			}
			j++
		}
		end := min(j, len(doc)) // the content is doc[start:end]
		if exempt != nil {
			isKey := false
			for k := j + 1; k < len(doc); k++ {
				if c := doc[k]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					isKey = c == ':'
					break
				}
			}
			if isKey {
				skip = exempt(doc[start:end])
				i = j
				continue
			}
			if skip {
				skip = false
				i = j
				continue
			}
		}
		if end-start > limit {
			keep := start + limit - len(marker(end-start))
			keep = safeCut(doc, start, keep)
			if out == nil {
				out = make([]byte, 0, len(doc)/2)
			}
			out = append(out, doc[last:keep]...)
			out = append(out, marker(end-keep)...)
			last = end
		}
		i = j // at the closing quote (or past the end)
	}
	if out == nil {
		return doc
	}
	return append(out, doc[last:]...)
}

// safeCut moves cut back so that doc[start:cut] ends neither inside an
// escape sequence nor inside a UTF-8 sequence.
func safeCut(doc []byte, start, cut int) int {
	// Find the escape sequence that contains cut, if any: scan the
	// content from start (linear, once per capped string).
	for i := start; i < cut; {
		if doc[i] == '\\' {
			n := 2
			if i+1 < len(doc) && doc[i+1] == 'u' {
				n = 6
			}
			if i+n > cut {
				return i
			}
			i += n
			continue
		}
		i++
	}
	for k := 0; k < utf8.UTFMax && cut > start && !utf8.RuneStart(doc[cut]); k++ {
		cut--
	}
	return cut
}

// LogWriter returns a writer for zerolog (or any writer of one JSON object
// per Write) that caps every string of a line at limit bytes (DefaultLogField
// when limit <= 0) with JSONStrings before passing it to w; only a "stack"
// (a panic's stack trace, which no request makes long) is kept whole. A
// line no longer than limit passes unchanged, so the common case costs one
// comparison.
func LogWriter(w io.Writer, limit int) io.Writer {
	if limit <= 0 {
		limit = DefaultLogField
	}
	return &logWriter{w: w, max: limit}
}

type logWriter struct {
	w   io.Writer
	max int
}

func (l *logWriter) Write(p []byte) (int, error) {
	if len(p) <= l.max {
		return l.w.Write(p)
	}
	q := capStrings(p, l.max, isStack)
	if _, err := l.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

func isStack(key []byte) bool { return string(key) == "stack" }
