package mcp

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestParseMessage(t *testing.T) {
	for _, tc := range []struct {
		body   string
		kind   msgKind
		method string
		id     string
		code   int // refused with
	}{
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, kind: kindRequest, method: "tools/list", id: "1"},
		{body: ` {"id":"a\"b","jsonrpc":"2.0","method":"ping","params":{}} `, kind: kindRequest, method: "ping", id: `a"b`},
		{body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, kind: kindNotification, method: "notifications/initialized"},
		{body: `{"jsonrpc":"2.0","id":3,"result":{}}`, kind: kindResponse, id: "3"},
		{body: `{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}`, kind: kindResponse, id: "3"},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tool\u0073/list"}`, kind: kindRequest, method: "tools/list", id: "1"},
		{body: `[]`, code: CodeInvalidRequest},
		{body: `{`, code: CodeParseError},
		{body: "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"p\xffing\"}", code: CodeParseError},
		{body: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":{},"method":"ping"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":5}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":""}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","met\u0068od":"tools/call"}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"k":1,"K":2}}`, code: CodeInvalidRequest},
		// U+212A KELVIN SIGN folds to k: Go's encoding/json would match it.
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"k":1,"\u212a":2}}`, code: CodeInvalidRequest},
		{body: `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}}`, code: CodeInvalidRequest},
	} {
		m, fail := parseMessage([]byte(tc.body))
		if tc.code != 0 {
			if fail == nil || fail.code != tc.code {
				t.Errorf("%s: got %+v, want code %d", tc.body, fail, tc.code)
			}
			continue
		}
		if fail != nil {
			t.Errorf("%s: refused: %s", tc.body, fail.msg)
			continue
		}
		if m.kind != tc.kind || m.method != tc.method || (tc.id != "" && idText(m.id) != tc.id) {
			t.Errorf("%s: got kind %d method %q id %q", tc.body, m.kind, m.method, idText(m.id))
		}
	}
	if !methodAllowed("notifications/whatever") || methodAllowed("notifications/") || methodAllowed("tasks/get") {
		t.Fatal("allow-list")
	}
}

func TestKeysWithManyMembers(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{`)
	for i := 0; i < 5000; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"k` + string(rune('a'+i%26)) + strconv.Itoa(i) + `":1`)
	}
	ok := b.String() + `}`
	if err := checkJSON([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	if err := checkJSON([]byte(b.String() + `,"KA0":2}`)); err == nil {
		t.Fatal("case-folded duplicate in a large object accepted")
	}
}

func TestToolCallAndNames(t *testing.T) {
	tc, ok := parseToolCall([]byte(`{"name":"echo","arguments":{"a":[1,{"b":"}"}]}}`))
	if !ok || tc.name != "echo" || string(tc.args) != `{"a":[1,{"b":"}"}]}` {
		t.Fatalf("%+v %v", tc, ok)
	}
	for _, p := range []string{`{}`, `{"name":1}`, `{"name":""}`, `{"name":"x","arguments":[1]}`} {
		if _, ok := parseToolCall([]byte(p)); ok {
			t.Errorf("%s accepted", p)
		}
	}
	if n, has := nameOf("resources/read", []byte(`{"uri":"file:///x"}`)); !has || n != "file:///x" {
		t.Fatal(n)
	}
	if !wantsURLElicitation([]byte(`{"capabilities":{"elicitation":{"url":{}}}}`), true) ||
		wantsURLElicitation([]byte(`{"capabilities":{"elicitation":{"form":{}}}}`), true) ||
		!wantsURLElicitation([]byte(`{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}}`), false) {
		t.Fatal("elicitation capability")
	}
	if ri := inspect([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}`)); !ri.response || ri.errCode != -32602 {
		t.Fatalf("%+v", ri)
	}
	if ri := inspect([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"result":1}}`)); ri.response {
		t.Fatal("notification taken for a response")
	}
}

// FuzzParseMessage: the parser never panics, and what it accepts reads the
// same to an exact, case-sensitive decoder (the MCP SDKs').
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`,
		`{"jsonrpc":"2.0","id":"x","result":{"tools":[]}}`,
		`{"jsonrpc":"2.0","id":1,"method":"ping","Method":"x"}`,
		`{"jsonrpc":"2.0","id":1,"method":"a\\"}`,
		`[1]`, `{`, `"`, `{"a":"\u00`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, fail := parseMessage(body)
		if fail != nil {
			return
		}
		var exact map[string]json.RawMessage
		if err := json.Unmarshal(body, &exact); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", body, err)
		}
		var method string
		if raw, ok := exact["method"]; ok {
			_ = json.Unmarshal(raw, &method)
		}
		if method != m.method {
			t.Fatalf("%q: method %q, exact decoder %q", body, m.method, method)
		}
		if m.method == "tools/call" {
			if tc, ok := parseToolCall(m.params); ok {
				var p struct {
					Name string `json:"name"`
				}
				_ = json.Unmarshal(exact["params"], &p)
				if p.Name != tc.name {
					t.Fatalf("%q: tool %q, encoding/json %q", body, tc.name, p.Name)
				}
			}
		}
	})
}
