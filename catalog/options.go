package catalog

import (
	"net/url"
	"sort"
	"strings"
)

// Connection option names.
const (
	OptURL                   = "url"
	OptAuthMode              = "auth_mode"
	OptScopes                = "scopes"
	OptAudience              = "audience"
	OptClientID              = "client_id"
	OptClientSecret          = "client_secret"
	OptBearerToken           = "bearer_token"
	OptTokenEndpoint         = "token_endpoint"
	OptAuthorizationEndpoint = "authorization_endpoint"
	OptIncludeTools          = "include_tools"
)

// AuthModes are the accepted values of auth_mode.
var authModes = []string{"none", "shared_principal", "per_user_oauth", "token_exchange", "mandate_jwt"}

// connectionOptions lists every known option and whether it is secret.
var connectionOptions = map[string]bool{
	OptURL: false, OptAuthMode: false, OptScopes: false, OptAudience: false, OptClientID: false,
	OptClientSecret: true, OptBearerToken: true, OptTokenEndpoint: false, OptAuthorizationEndpoint: false,
	OptIncludeTools: false,
}

// IsSecretOption reports whether a connection option is a secret (encrypted
// at rest, never shown back, redacted from audit and logs).
func IsSecretOption(key string) bool { return connectionOptions[strings.ToLower(key)] }

// ConnectionTypes are the accepted connection TYPEs.
var connectionTypes = []string{"MCP"}

// ValidateConnectionOptions checks the options of a connection and splits
// them into plain and secret options. Unknown keys, duplicates and malformed
// values are errors.
func ValidateConnectionOptions(typ string, opts [][2]string) (plain, secret map[string]string, err error) {
	if !contains(connectionTypes, strings.ToUpper(typ)) {
		return nil, nil, Errorf(CodeInvalidArgument, "unknown connection type %q", typ).
			WithHint("supported connection types: " + strings.Join(connectionTypes, ", "))
	}
	plain, secret = map[string]string{}, map[string]string{}
	seen := map[string]bool{}
	for _, kv := range opts {
		k, v := strings.ToLower(kv[0]), kv[1]
		isSecret, known := connectionOptions[k]
		if !known {
			names := make([]string, 0, len(connectionOptions))
			for n := range connectionOptions {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, nil, Errorf(CodeInvalidArgument, "unknown connection option %q", kv[0]).
				WithHint("valid options: " + strings.Join(names, ", "))
		}
		if seen[k] {
			return nil, nil, Errorf(CodeInvalidArgument, "option %q specified more than once", k)
		}
		seen[k] = true
		if err := validateOption(k, v); err != nil {
			return nil, nil, err
		}
		if isSecret {
			secret[k] = v
		} else {
			plain[k] = v
		}
	}
	if _, ok := plain[OptURL]; !ok {
		return nil, nil, Errorf(CodeInvalidArgument, "connection option %q is required", OptURL)
	}
	if _, ok := plain[OptAuthMode]; !ok {
		plain[OptAuthMode] = "none"
	}
	switch plain[OptAuthMode] {
	case "shared_principal":
		_, hasToken := secret[OptBearerToken]
		_, hasSecret := secret[OptClientSecret]
		_, hasID := plain[OptClientID]
		_, hasTE := plain[OptTokenEndpoint]
		if !hasToken && !(hasSecret && hasID && hasTE) {
			return nil, nil, Errorf(CodeInvalidArgument,
				"auth_mode 'shared_principal' needs either bearer_token or client_id, client_secret and token_endpoint")
		}
		if hasToken && (hasSecret || hasID) {
			return nil, nil, Errorf(CodeInvalidArgument, "auth_mode 'shared_principal' takes either bearer_token or client credentials, not both")
		}
	default:
		if _, ok := secret[OptBearerToken]; ok {
			return nil, nil, Errorf(CodeInvalidArgument, "option bearer_token is only valid with auth_mode 'shared_principal'")
		}
	}
	return plain, secret, nil
}

func validateOption(k, v string) error {
	if strings.ContainsAny(v, "\x00") {
		return Errorf(CodeInvalidArgument, "option %q contains a NUL byte", k)
	}
	switch k {
	case OptURL, OptTokenEndpoint, OptAuthorizationEndpoint:
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Errorf(CodeInvalidArgument, "option %q must be an absolute http or https URL, got %q", k, v)
		}
		if u.User != nil {
			return Errorf(CodeInvalidArgument, "option %q must not carry credentials in the URL", k)
		}
	case OptAuthMode:
		if !contains(authModes, v) {
			return Errorf(CodeInvalidArgument, "invalid auth_mode %q", v).WithHint("valid values: " + strings.Join(authModes, ", "))
		}
	case OptScopes:
		for _, s := range strings.Fields(v) {
			for _, r := range s {
				if r < 0x21 || r == '"' || r == '\\' || r > 0x7e {
					return Errorf(CodeInvalidArgument, "invalid scope %q: scopes are space-separated tokens of printable ASCII", s)
				}
			}
		}
	case OptIncludeTools:
		if strings.TrimSpace(v) == "" {
			return Errorf(CodeInvalidArgument, "option include_tools must list at least one tool name or prefix* pattern")
		}
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			name := strings.TrimSuffix(t, "*")
			if t == "" || strings.Contains(name, "*") {
				return Errorf(CodeInvalidArgument, "invalid include_tools entry %q: use tool names or prefix* patterns separated by commas", t)
			}
			for _, r := range name {
				if !(r == '_' || r == '-' || r == '.' || r == '/' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
					return Errorf(CodeInvalidArgument, "invalid include_tools entry %q: unexpected character %q", t, r)
				}
			}
		}
	default:
		if strings.TrimSpace(v) == "" {
			return Errorf(CodeInvalidArgument, "option %q must not be empty", k)
		}
	}
	return nil
}

// ToolAllowed reports whether a tool passes an include_tools list ("" = all).
func ToolAllowed(includeTools, tool string) bool {
	if strings.TrimSpace(includeTools) == "" {
		return true
	}
	for _, t := range strings.Split(includeTools, ",") {
		t = strings.TrimSpace(t)
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(tool, p) {
				return true
			}
		} else if t == tool {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
