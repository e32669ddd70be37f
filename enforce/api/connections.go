package api

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// ConnectionsPath is the prefix of GET /api/v1/connections/{name}.
const ConnectionsPath = "/api/v1/connections/"

// ConnectionInfo is a connection resolved for a gateway node: the answer
// of GET /api/v1/connections/{name}. Secrets holds the decrypted secret
// options (client_secret, bearer_token): it goes only to callers holding
// the node token (the upstream credentials are what a gateway node needs
// to act), is answered with Cache-Control: no-store, and must never be
// logged. It is answered only over TLS or to a loopback peer (see
// Options.AllowCleartextSecrets): the node token and these secrets travel
// on it.
type ConnectionInfo struct {
	// Name is the full three-part name (system.ai.my_github_mcp).
	Name     string `json:"name"`
	URL      string `json:"url"`
	AuthMode string `json:"auth_mode"`
	// Options are the non-secret options by name (url, auth_mode, scopes,
	// type, ...).
	Options  map[string]string `json:"options"`
	Secrets  map[string]string `json:"secrets"`
	Revision catalog.Revision  `json:"revision"` // catalog revision of this answer
}

// ConnectionResolver returns a resolver of connection names over svc for
// Options.Connections (and for in-process gateways). A one-part name is
// system.ai.<name>, a two-part name schema.<name> in the system catalog, a
// three-part name is taken as given; identifiers may be double-quoted
// ("My Conn") and unquoted ones that match nothing are retried in lower
// case (SQL folds unquoted identifiers). An unknown connection is a
// *catalog.Error with CodeNotFound, a malformed name CodeInvalidArgument.
// Secrets are decrypted with svc.Keyring().
func ConnectionResolver(svc *catalog.Service) func(ctx context.Context, name string) (*ConnectionInfo, error) {
	return func(ctx context.Context, name string) (*ConnectionInfo, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		parts, quoted, err := splitName(name)
		if err != nil {
			return nil, err
		}
		var (
			info   ConnectionInfo
			id     catalog.ID
			sealed []byte
		)
		svc.Read(func(m *catalog.Model) {
			var s *catalog.Securable
			s, err = lookupConnection(m, parts, quoted)
			if err != nil {
				return
			}
			id, sealed = s.ID, s.Secrets
			info = ConnectionInfo{Name: s.FullName(), URL: s.Options[catalog.OptURL], AuthMode: s.Options[catalog.OptAuthMode],
				Options: maps.Clone(s.Options), Revision: m.Revision()}
		})
		if err != nil {
			return nil, err
		}
		if info.Options == nil {
			info.Options = map[string]string{}
		}
		if info.Secrets, err = svc.Keyring().OpenMap(sealed, catalog.SecretsAAD(id)); err != nil {
			return nil, err
		}
		return &info, nil
	}
}

// lookupConnection finds the connection named by parts, retrying the
// unquoted parts in lower case.
func lookupConnection(m *catalog.Model, parts []string, quoted []bool) (*catalog.Securable, error) {
	path, err := catalog.ResolveName(catalog.TypeConnection, parts, catalog.SystemCatalog)
	if err != nil {
		return nil, err
	}
	s, err := m.Lookup(catalog.TypeConnection, path)
	if err == nil || !catalog.IsCode(err, catalog.CodeNotFound) {
		return s, err
	}
	lower := make([]string, len(parts))
	changed := false
	for i, p := range parts {
		lower[i] = p
		if !quoted[i] {
			lower[i] = strings.ToLower(p)
			changed = changed || lower[i] != p
		}
	}
	if !changed {
		return nil, err
	}
	lpath, lerr := catalog.ResolveName(catalog.TypeConnection, lower, catalog.SystemCatalog)
	if lerr != nil {
		return nil, err
	}
	if s, lerr := m.Lookup(catalog.TypeConnection, lpath); lerr == nil {
		return s, nil
	}
	return nil, err
}

// splitName splits a dotted name into its identifiers; an identifier in
// double quotes may hold dots, and "" stands for a quote inside it.
func splitName(name string) (parts []string, quoted []bool, err error) {
	bad := func(why string) ([]string, []bool, error) {
		return nil, nil, catalog.Errorf(catalog.CodeInvalidArgument, "invalid connection name %q: %s", name, why)
	}
	if strings.TrimSpace(name) == "" {
		return bad("empty")
	}
	for i := 0; ; {
		var part strings.Builder
		q := i < len(name) && name[i] == '"'
		if q {
			i++
			for {
				j := strings.IndexByte(name[i:], '"')
				if j < 0 {
					return bad("unterminated quote")
				}
				part.WriteString(name[i : i+j])
				i += j + 1
				if i < len(name) && name[i] == '"' {
					part.WriteByte('"')
					i++
					continue
				}
				break
			}
		} else {
			j := strings.IndexAny(name[i:], `."`)
			if j < 0 {
				j = len(name) - i
			} else if name[i+j] == '"' {
				return bad("a quote inside an unquoted identifier")
			}
			part.WriteString(name[i : i+j])
			i += j
		}
		if part.Len() == 0 {
			return bad("empty identifier")
		}
		parts, quoted = append(parts, part.String()), append(quoted, q)
		if len(parts) > 3 {
			return bad("more than three parts")
		}
		if i == len(name) {
			return parts, quoted, nil
		}
		if name[i] != '.' {
			return bad("expected a dot after a quoted identifier")
		}
		i++
		if i == len(name) {
			return bad("empty identifier")
		}
	}
}

// loopbackPeer reports whether r came from a loopback address.
func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// connection answers GET /api/v1/connections/{name}: only over TLS or to
// a loopback peer (or with Options.AllowCleartextSecrets), as it carries
// decrypted secrets.
func (h *handler) connection(w http.ResponseWriter, r *http.Request) error {
	if h.o.Connections == nil {
		return errorf(http.StatusServiceUnavailable, "connection resolution is not configured on this catalog")
	}
	if err := h.secretsTransport(r, "connection secrets"); err != nil {
		return err
	}
	name := strings.TrimPrefix(r.URL.Path, ConnectionsPath)
	if name == "" {
		return errorf(http.StatusBadRequest, "malformed request: a connection name is required (%s{name})", ConnectionsPath)
	}
	info, err := h.o.Connections(r.Context(), name)
	switch {
	case err == nil && info == nil:
		err = catalog.Errorf(catalog.CodeNotFound, "connection %s does not exist", name)
		fallthrough
	case err != nil:
		switch catalog.CodeOf(err) {
		case catalog.CodeNotFound:
			return errorf(http.StatusNotFound, "%s", err)
		case catalog.CodeInvalidArgument:
			return errorf(http.StatusBadRequest, "%s", err)
		case catalog.CodeUnavailable:
			return errorf(http.StatusServiceUnavailable, "%s", err)
		}
		h.log.Error().Err(err).Str("connection", name).Msg("resolving a connection for a node failed")
		return errorf(http.StatusInternalServerError, "internal error")
	}
	h.log.Debug().Str("connection", info.Name).Str("remote", r.RemoteAddr).Int64("revision", int64(info.Revision)).
		Msg("connection with its secrets sent to a node")
	writeJSON(w, http.StatusOK, info)
	return nil
}
