package parser

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"mistyped secret option",
			`CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://x.example/', auth_mode 'shared_principal', bearer_tokn 'S7-abc')`,
			`CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://x.example/', auth_mode 'shared_principal', bearer_tokn '********')`},
		{"options named like secrets",
			`ALTER CONNECTION c SET OPTIONS (password 'p1', refresh_token = 'r1', api_key 'k1', "Client-Secret" = E'c\'1', apiKey $$k2$$, private_key 42, pasword 'p2')`,
			`ALTER CONNECTION c SET OPTIONS (password '********', refresh_token = '********', api_key '********', "Client-Secret" = '********', apiKey '********', private_key '********', pasword '********')`},
		{"plain options kept",
			`CREATE CONNECTION token_mcp TYPE MCP OPTIONS (url 'https://x.example/mcp', token_endpoint 'https://x.example/token', client_id 'gw', auth_mode 'token_exchange', max_tokens '5') COMMENT 'the token service'`,
			`CREATE CONNECTION token_mcp TYPE MCP OPTIONS (url 'https://x.example/mcp', token_endpoint 'https://x.example/token', client_id 'gw', auth_mode 'token_exchange', max_tokens '5') COMMENT 'the token service'`},
		{"names that look like secrets are not values",
			`GRANT USE CONNECTION ON CONNECTION secret_store TO token_bots, "api key holders"`,
			`GRANT USE CONNECTION ON CONNECTION secret_store TO token_bots, "api key holders"`},
		{"password", `CREATE USER "bob" WITH PASSWORD 'hunter2'`, `CREATE USER "bob" WITH PASSWORD '********'`},
		{"password NULL", `ALTER USER api_key_bot PASSWORD NULL`, `ALTER USER api_key_bot PASSWORD NULL`},
		{"unquoted password in a broken statement", `CREATE USER bob PASSWORD hunter2 garbage`, `CREATE USER bob PASSWORD '********' '********'`},
		{"unterminated password", `ALTER USER bob WITH PASSWORD 'hunter2`, `ALTER USER bob WITH PASSWORD '********'`},
		{"malformed escape", `CREATE USER bob PASSWORD E'hunter2\x0`, `CREATE USER bob PASSWORD '********'`},
		{"broken option list", `CREATE CONNECTION c TYPE MCP OPTIONS (bearer_token 'tok1' 'tok2', , client_secret`,
			`CREATE CONNECTION c TYPE MCP OPTIONS (bearer_token '********' '********', , client_secret`},
		{"URL credentials", `CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://user:pw1@x.example/mcp?token=t1&mode=a;sig=s1#access_token=t2')`,
			`CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://********@x.example/mcp?token=********&mode=a;sig=********#access_token=********')`},
		{"URL in a comment and an unterminated string", `/* see https://u:pw2@h.example/ */ CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://h.example/?api_key=k3`,
			`/* see https://********@h.example/ */ CREATE CONNECTION c TYPE MCP OPTIONS (url 'https://h.example/?api_key=********`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.in)
			if got != tc.want {
				t.Errorf("Redact(%s)\n got  %s\n want %s", tc.in, got, tc.want)
			}
			if again := Redact(got); again != got {
				t.Errorf("Redact is not idempotent: %s", again)
			}
		})
	}
}

// FuzzRedact: Redact never fails and leaves no value right
// after PASSWORD, a secret option name or in a URL's credentials.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		`CREATE USER u PASSWORD 'XYZZYVALUE'`,
		`CREATE CONNECTION c TYPE MCP OPTIONS (bearer_tokn 'XYZZYVALUE', url 'https://a:XYZZYVALUE@h/?token=XYZZYVALUE')`,
		`ALTER USER u PASSWORD $q$XYZZYVALUE`,
		`OPTIONS (client_secret = E'XYZZYVALUE`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		got := Redact(sql)
		for _, kept := range []string{"PASSWORD 'XYZZYVALUE", "bearer_tokn 'XYZZYVALUE", "://a:XYZZYVALUE@", "://h/?token=XYZZYVALUE"} {
			if strings.Contains(got, kept) {
				t.Fatalf("secret kept: %q -> %q", sql, got)
			}
		}
	})
}
