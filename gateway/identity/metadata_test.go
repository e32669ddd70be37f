package identity

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

func TestWWWAuthenticate(t *testing.T) {
	const md = "https://gw.example/.well-known/oauth-protected-resource/mcp/my_github_mcp"
	for _, tc := range []struct {
		name string
		err  *gateway.AuthError
		url  string
		want string
	}{
		{"nil", nil, md, `Bearer resource_metadata="` + md + `"`},
		{"missing token", &gateway.AuthError{Status: 401, Code: "invalid_request", Description: DescMissingToken}, md,
			`Bearer resource_metadata="` + md + `"`},
		{"missing token with scope", &gateway.AuthError{Status: 401, Code: "invalid_request", Description: DescMissingToken, Scope: "mcp:tools"}, md,
			`Bearer resource_metadata="` + md + `", scope="mcp:tools"`},
		{"malformed", &gateway.AuthError{Status: 401, Code: "invalid_request", Description: DescMalformedToken}, md,
			`Bearer resource_metadata="` + md + `", error="invalid_request", error_description="malformed bearer token"`},
		{"invalid token", &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "token is expired"}, md,
			`Bearer resource_metadata="` + md + `", error="invalid_token", error_description="token is expired"`},
		{"insufficient scope", &gateway.AuthError{Status: 403, Code: "insufficient_scope", Description: "token lacks a required scope", Scope: "mcp:tools mcp:call"}, md,
			`Bearer resource_metadata="` + md + `", error="insufficient_scope", error_description="token lacks a required scope", scope="mcp:tools mcp:call"`},
		{"no metadata url", &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "x"}, "",
			`Bearer error="invalid_token", error_description="x"`},
		{"escaping", &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "signing algorithm \"n\\o\"\r\nX-Evil: 1 é"}, `https://gw.example/a"b\c d` + "\r\n",
			`Bearer resource_metadata="https://gw.example/a%22b%5Cc%20d%0D%0A", error="invalid_token", error_description="signing algorithm 'n/o'??X-Evil: 1 ??"`},
		{"bad scope tokens dropped", &gateway.AuthError{Status: 403, Code: "insufficient_scope", Scope: `a "b" c\d  é e`}, "",
			`Bearer error="insufficient_scope", scope="a e"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WWWAuthenticate(tc.err, tc.url); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestWWWAuthenticateFromAuthenticate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequiredScopes = []string{"mcp:tools"} })
	cl := e.claims()
	cl["exp"] = e.clk.Now().Add(-time.Hour).Unix()
	_, ae := e.auth(e.rs256(cl))
	got := WWWAuthenticate(ae, MetadataURL("https://gw.example", "/mcp/x"))
	want := `Bearer resource_metadata="https://gw.example/.well-known/oauth-protected-resource/mcp/x", error="invalid_token", error_description="token is expired", scope="mcp:tools"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestMetadataURL(t *testing.T) {
	for _, tc := range [][3]string{
		{"https://gw.example", "/mcp/my_github_mcp", "https://gw.example/.well-known/oauth-protected-resource/mcp/my_github_mcp"},
		{"https://gw.example/", "/mcp/my_github_mcp", "https://gw.example/.well-known/oauth-protected-resource/mcp/my_github_mcp"},
		{"https://gw.example", "mcp/x", "https://gw.example/.well-known/oauth-protected-resource/mcp/x"},
		{"https://gw.example", "", "https://gw.example/.well-known/oauth-protected-resource"},
		{"https://gw.example:8443/base/", "/mcp/x", "https://gw.example:8443/.well-known/oauth-protected-resource/base/mcp/x"},
	} {
		if got := MetadataURL(tc[0], tc[1]); got != tc[2] {
			t.Errorf("MetadataURL(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestMetadataDocument(t *testing.T) {
	doc := MetadataDocument(resource, []string{"https://idp.example"}, []string{"mcp:tools", "read"})
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"resource":                 resource,
		"authorization_servers":    []any{"https://idp.example"},
		"bearer_methods_supported": []any{"header"},
		"scopes_supported":         []any{"mcp:tools", "read"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %s", doc)
	}
	doc = MetadataDocument(resource, nil, nil)
	if string(doc) != `{"resource":"`+resource+`","authorization_servers":[],"bearer_methods_supported":["header"]}` {
		t.Fatalf("got %s", doc)
	}

	h := MetadataHandler(MetadataDocument(resource, []string{"https://idp.example"}, nil))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, MetadataURL("https://gw.example", "/mcp/x"), nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" || !strings.Contains(w.Body.String(), `"resource"`) {
		t.Fatalf("GET: %d %v %s", w.Code, w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", w.Code)
	}
}
