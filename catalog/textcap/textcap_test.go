package textcap_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog/textcap"
)

func TestString(t *testing.T) {
	tests := []struct {
		s     string
		limit int
	}{
		{"short", 10},
		{strings.Repeat("x", 500_000), 512},
		{strings.Repeat("é", 1000), 100}, // 2-byte runes
		{strings.Repeat("😀", 1000), 101}, // 4-byte runes
		{strings.Repeat("ab", 100), 20},  // below the marker's room
		{strings.Repeat("x", 33), 32},
	}
	for _, tt := range tests {
		got := textcap.String(tt.s, tt.limit)
		if len(tt.s) <= tt.limit {
			if got != tt.s {
				t.Fatalf("String changed a short text: %q", got)
			}
			continue
		}
		if len(got) > tt.limit || !utf8.ValidString(got) {
			t.Fatalf("String(%d bytes, %d) = %d bytes, valid UTF-8 %v", len(tt.s), tt.limit, len(got), utf8.ValidString(got))
		}
		if tt.limit >= 32 && !strings.Contains(got, "…[cut ") {
			t.Fatalf("no marker in %q", got)
		}
		if !strings.HasPrefix(tt.s, strings.Split(got, "…[cut ")[0]) {
			t.Fatalf("%q is not a prefix of the text", got)
		}
	}
}

func TestJSONStrings(t *testing.T) {
	long := strings.Repeat("x", 5000)
	docs := []string{
		`{"statement":"` + long + `","n":1}`,
		`{"` + long + `":"` + long + `"}`,
		`["` + strings.Repeat(`\u00e9\"\\`, 800) + `"]`,
		`{"a":"` + strings.Repeat("😀", 2000) + `","b":"short"}`,
	}
	for _, d := range docs {
		got := textcap.JSONStrings([]byte(d), 100)
		if !json.Valid(got) {
			t.Fatalf("capped JSON is invalid: %s", got)
		}
		var v any
		if err := json.Unmarshal(got, &v); err != nil {
			t.Fatal(err)
		}
		checkStrings(t, v, 100)
		if len(got) > 400 {
			t.Fatalf("capped to %d bytes", len(got))
		}
	}
	short := []byte(`{"a":"b"}`)
	if got := textcap.JSONStrings(short, 100); &got[0] != &short[0] {
		t.Fatal("a short document was copied")
	}
}

func checkStrings(t *testing.T, v any, limit int) {
	t.Helper()
	switch v := v.(type) {
	case string:
		// decoded text is at most as long as its escaped form
		if len(v) > limit {
			t.Fatalf("string of %d bytes survived", len(v))
		}
	case []any:
		for _, e := range v {
			checkStrings(t, e, limit)
		}
	case map[string]any:
		for k, e := range v {
			checkStrings(t, k, limit)
			checkStrings(t, e, limit)
		}
	}
}

// TestLogWriter: a request-derived value logged through zerolog is capped,
// in JSON and in console format.
func TestLogWriter(t *testing.T) {
	ua := strings.Repeat("A", 500_000)
	var buf bytes.Buffer
	log := zerolog.New(textcap.LogWriter(&buf, 0))
	log.Warn().Str("user_agent", ua).Str("user", "alice").Msg("refused")
	if buf.Len() > 2*textcap.DefaultLogField {
		t.Fatalf("log line of %d bytes", buf.Len())
	}
	var line map[string]string
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v", err)
	}
	if line["user"] != "alice" || !strings.Contains(line["user_agent"], "…[cut ") {
		t.Fatalf("line %v", line)
	}
	buf.Reset()
	log = zerolog.New(textcap.LogWriter(zerolog.ConsoleWriter{Out: &buf, NoColor: true}, 0))
	log.Warn().Str("user_agent", ua).Msg("refused")
	if buf.Len() > 2*textcap.DefaultLogField || !strings.Contains(buf.String(), "…[cut ") {
		t.Fatalf("console line of %d bytes: %.200s", buf.Len(), buf.String())
	}
}

// TestLogWriterKeepsStacks: a panic's stack trace is not cut; a value
// that merely looks like a key is.
func TestLogWriterKeepsStacks(t *testing.T) {
	stack := strings.Repeat("goroutine 1 [running]:\n", 200)
	var buf bytes.Buffer
	log := zerolog.New(textcap.LogWriter(&buf, 0))
	log.Error().Str("where", `"stack":`+strings.Repeat("x", 3000)).Str("stack", stack).Msg("panic")
	var line map[string]string
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["stack"] != stack || len(line["where"]) > textcap.DefaultLogField {
		t.Fatalf("stack kept: %v, where %d bytes", line["stack"] == stack, len(line["where"]))
	}
}
