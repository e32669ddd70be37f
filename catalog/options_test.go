package catalog_test

import (
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

func TestLooksSecret(t *testing.T) {
	for _, name := range []string{
		"bearer_token", "BEARER_TOKEN", "client_secret", "bearer_tokn", "beare_token", "password", "pasword", "passwd",
		"refresh_token", "access_token", "id_token", "api_key", "apiKey", "X-Api-Key", "apikey", "private_key",
		"key", "secret", "client-secret", "credentials", "authorization", "sig", "session_cookie", "toekn",
	} {
		if !catalog.LooksSecret(name) {
			t.Errorf("LooksSecret(%q) = false", name)
		}
	}
	for _, name := range []string{
		"url", "auth_mode", "scopes", "audience", "client_id", "token_endpoint", "authorization_endpoint",
		"include_tools", "token_url", "token_type", "key_id", "max_tokens", "public_key", "mode", "timeout", "tools", "",
	} {
		if catalog.LooksSecret(name) {
			t.Errorf("LooksSecret(%q) = true", name)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@h.example/p?q=1":                 "https://********@h.example/p?q=1",
		"https://ghp_abc@h.example/":                      "https://********@h.example/",
		"https://h.example/mcp?token=t&x=1;api_key=k#a=b": "https://h.example/mcp?token=********&x=1;api_key=********#a=b",
		"https://h.example/cb#access_token=t&state=s":     "https://h.example/cb#access_token=********&state=s",
		"see https://a:b@x/ and http://y/?Secret=z now":   "see https://********@x/ and http://y/?Secret=******** now",
		"https://h.example/p?next=%2Fa&client%5Fsecret=c": "https://h.example/p?next=%2Fa&client%5Fsecret=********",
		"plain text, token=abc":                           "plain text, token=abc",
		"https://h.example/mcp":                           "https://h.example/mcp",
	} {
		if got := catalog.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConnectionURLCredentials: a URL option carrying credentials is
// refused, and the error does not repeat them.
func TestConnectionURLCredentials(t *testing.T) {
	for _, u := range []string{
		"https://user:hunter2@mcp.example/mcp",
		"https://ghp_hunter2@mcp.example/mcp",
		"https://mcp.example/mcp?token=hunter2",
		"https://mcp.example/mcp?x=1&API_KEY=hunter2",
		"https://mcp.example/mcp#access_token=hunter2",
	} {
		for _, opt := range []string{catalog.OptURL, catalog.OptTokenEndpoint} {
			opts := [][2]string{{catalog.OptURL, "https://ok.example/"}, {opt, u}}
			if opt == catalog.OptURL {
				opts = opts[1:]
			}
			_, _, err := catalog.ValidateConnectionOptions("MCP", opts)
			if !catalog.IsCode(err, catalog.CodeInvalidArgument) || !strings.Contains(err.Error(), "must not carry credentials") {
				t.Errorf("%s %s: %v, want a refusal", opt, u, err)
				continue
			}
			e := err.(*catalog.Error)
			if strings.Contains(e.Error()+e.Hint+e.Detail, "hunter2") {
				t.Errorf("%s %s: the error repeats the credential: %v", opt, u, err)
			}
		}
	}
	if _, _, err := catalog.ValidateConnectionOptions("MCP", [][2]string{{"url", "https://mcp.example/mcp?tool=search&mode=fast"}}); err != nil {
		t.Errorf("a URL with plain parameters: %v", err)
	}
	_, _, err := catalog.ValidateConnectionOptions("MCP", [][2]string{{"url", "notaurl?token=hunter2"}})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("malformed URL with a token: %v", err)
	}
	_, _, err = catalog.ValidateConnectionOptions("MCP", [][2]string{{"url", "https://ok.example/"}, {"bearer_tokn", "hunter2"}})
	if e, ok := err.(*catalog.Error); !ok || !strings.Contains(e.Hint, `did you mean "bearer_token"?`) || strings.Contains(e.Error()+e.Hint, "hunter2") {
		t.Errorf("mistyped option: %v", err)
	}
}
