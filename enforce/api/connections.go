package api

import (
	"context"
	"errors"
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
		var (
			info   ConnectionInfo
			id     catalog.ID
			sealed []byte
		)
		err := resolveNamed(ctx, svc, catalog.TypeConnection, name, func(m *catalog.Model, s *catalog.Securable) {
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

// splitName splits a dotted name into its identifiers as written, and
// whether each was quoted (catalog.SplitNameQuoted).
func splitName(name string) (parts []string, quoted []bool, err error) {
	if strings.TrimSpace(name) == "" {
		err = errors.New("empty")
	} else {
		parts, quoted, err = catalog.SplitNameQuoted(name)
	}
	if err != nil {
		return nil, nil, catalog.Errorf(catalog.CodeInvalidArgument, "invalid connection name %q: %v", name, err)
	}
	return parts, quoted, nil
}

// resolveNamed resolves name to a securable of type typ (as
// ConnectionResolver resolves names) and calls fn with it inside one read
// of the catalog.
func resolveNamed(ctx context.Context, svc *catalog.Service, typ catalog.SecurableType, name string, fn func(*catalog.Model, *catalog.Securable)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	parts, quoted, err := splitName(name)
	if err != nil {
		return err
	}
	svc.Read(func(m *catalog.Model) {
		var s *catalog.Securable
		if s, err = lookupNamed(m, typ, parts, quoted); err == nil {
			fn(m, s)
		}
	})
	return err
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
	return sendSecrets(h, w, r, secretKind{what: "connection", log: "connection", secrets: "connection secrets", path: ConnectionsPath},
		h.o.Connections, strings.TrimPrefix(r.URL.Path, ConnectionsPath), func(c *ConnectionInfo) (string, catalog.Revision) { return c.Name, c.Revision })
}

// secretKind names what a resolver answers, in messages and logs, and the
// path prefix of its endpoint.
type secretKind struct{ what, log, secrets, path string }

// sendSecrets answers a node's GET of one securable resolved with its
// decrypted secrets (a connection, a model service): refused when the
// catalog has no resolver, over cleartext to a non-loopback peer, or as
// the resolver's error renders (resolveError); else the resolved value,
// logged by name and revision only.
func sendSecrets[T any](h *handler, w http.ResponseWriter, r *http.Request, k secretKind,
	resolve func(context.Context, string) (*T, error), name string, describe func(*T) (string, catalog.Revision)) error {
	if resolve == nil {
		return errorf(http.StatusServiceUnavailable, "%s resolution is not configured on this catalog", k.what)
	}
	if err := h.secretsTransport(r, k.secrets); err != nil {
		return err
	}
	if name == "" {
		return errorf(http.StatusBadRequest, "malformed request: a %s name is required (%s{name})", k.what, k.path)
	}
	info, err := resolve(r.Context(), name)
	if err == nil && info == nil {
		err = catalog.Errorf(catalog.CodeNotFound, "%s %s does not exist", k.what, name)
	}
	if err != nil {
		return h.resolveError(err, "resolving "+k.what+" "+name)
	}
	full, rev := describe(info)
	h.log.Debug().Str(k.log, full).Str("remote", r.RemoteAddr).Int64("revision", int64(rev)).
		Msgf("%s with its secrets sent to a node", k.what)
	writeJSON(w, http.StatusOK, info)
	return nil
}
