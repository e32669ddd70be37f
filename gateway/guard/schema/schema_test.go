package schema

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const weatherSchema = `{"type":"object","properties":{"temperature":{"type":"number"},"conditions":{"type":"string","enum":["sunny","cloudy","rain"]},"humidity":{"type":"number","minimum":0,"maximum":100}},"required":["temperature","conditions"],"additionalProperties":false}`

func TestToolResult(t *testing.T) {
	c := NewCache(8, Limits{})
	for _, tc := range []struct {
		result string
		err    string
	}{
		{`{"content":[{"type":"text","text":"{}"}],"structuredContent":{"temperature":22.5,"conditions":"sunny","humidity":40}}`, ""},
		{`{"content":[],"structuredContent":{"temperature":"hot","conditions":"sunny"}}`, "at /temperature: type (want number)"},
		{`{"content":[],"structuredContent":{"conditions":"snow","extra":1}}`, "missing temperature"},
		{`{"content":[{"type":"text","text":"22C sunny"}]}`, ErrMissingStructuredContent.Error()},
		{`{"content":[],"structuredContent":null}`, ErrMissingStructuredContent.Error()},
		{`{"content":[{"type":"text","text":"boom"}],"isError":true}`, ""},
		{`not json`, "not valid JSON"},
	} {
		err := c.ToolResult([]byte(weatherSchema), []byte(tc.result))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.result, err, tc.err)
		}
	}
	// violations name places and keywords, never values
	err := c.ToolResult([]byte(weatherSchema), []byte(`{"structuredContent":{"temperature":"SECRET-VALUE","conditions":"CONFIDENTIAL"}}`))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Violations) != 2 || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "CONFIDENTIAL") {
		t.Errorf("violations: %v", err)
	}
	if c.Len() != 1 {
		t.Errorf("cache holds %d schemas for one", c.Len())
	}
}

func TestCompileBounds(t *testing.T) {
	c := NewCache(4, Limits{MaxSchemaBytes: 4096, MaxSchemaDepth: 16})
	for _, tc := range []struct{ doc, err string }{
		{`{"$ref":"https://evil.example/schema.json"}`, "not allowed"},
		{`{"$ref":"file:///etc/passwd"}`, "not allowed"},
		{`{"$ref":"#/$defs/missing"}`, "invalid schema"},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"type":"string"}}}`, ""},
		{`{"$schema":"http://json-schema.org/draft-07/schema#","type":"string"}`, ""},
		{`{"type":"strin"}`, "invalid schema"},
		{`{"type":"object"`, "invalid schema"},
		{`[1,2]`, "object or a boolean"},
		{`true`, ""},
		{`{"pattern":"(a"}`, "invalid schema"},
		{strings.Repeat(`{"items":`, 20) + `{}` + strings.Repeat(`}`, 20), "nested deeper"},
		{`{"description":"` + strings.Repeat("x", 5000) + `"}`, "larger than"},
	} {
		_, err := c.Compile([]byte(tc.doc))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%.60s: %v, want %q", tc.doc, err, tc.err)
		}
	}
	// the cache is bounded
	for i := range 10 {
		c.Compile([]byte(fmt.Sprintf(`{"minimum":%d}`, i)))
	}
	if c.Len() > 4 {
		t.Errorf("cache holds %d, max 4", c.Len())
	}
	// failures are cached: same error, same pointer
	_, e1 := c.Compile([]byte(`{"type":"nope"}`))
	_, e2 := c.Compile([]byte(`{"type":"nope"}`))
	if e1 == nil || e1 != e2 {
		t.Errorf("failure not cached: %v %v", e1, e2)
	}
}

func TestResponseFormat(t *testing.T) {
	rf := `{"type":"json_schema","json_schema":{"name":"weather","strict":true,"schema":` + weatherSchema + `}}`
	s, ok, err := ResponseFormatSchema([]byte(rf))
	if err != nil || !ok || string(s) != weatherSchema {
		t.Fatalf("%s %v %v", s, ok, err)
	}
	c := NewCache(4, Limits{})
	if err := c.Answer(s, []byte(` {"temperature":1,"conditions":"rain"} `)); err != nil {
		t.Error(err)
	}
	if err := c.Answer(s, []byte(`Sure! Here is the JSON: {"temperature":1}`)); !errors.Is(err, ErrInstance) {
		t.Errorf("prose answer: %v", err)
	}
	for _, other := range []string{``, `null`, `{"type":"text"}`, `{"type":"json_object"}`} {
		if _, ok, err := ResponseFormatSchema([]byte(other)); ok || err != nil {
			t.Errorf("%q: %v %v", other, ok, err)
		}
	}
	if _, _, err := ResponseFormatSchema([]byte(`{"type":"json_schema","json_schema":{"name":"x"}}`)); err == nil {
		t.Error("json_schema without schema accepted")
	}
}

func TestOptions(t *testing.T) {
	if _, err := Compile(nil); err != nil {
		t.Error(err)
	}
	if _, err := Compile(map[string]string{"strict": "true"}); err == nil || !strings.Contains(err.Error(), "takes no options") {
		t.Errorf("%v", err)
	}
}

func TestCacheConcurrent(t *testing.T) {
	c := NewCache(2, Limits{})
	done := make(chan error, 16)
	for i := range 16 {
		go func() {
			doc := fmt.Sprintf(`{"type":"object","required":["n%d"]}`, i%3)
			done <- c.ToolResult([]byte(doc), []byte(fmt.Sprintf(`{"structuredContent":{"n%d":1}}`, i%3)))
		}()
	}
	for range 16 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if c.Len() > 2 {
		t.Errorf("cache holds %d", c.Len())
	}
}
