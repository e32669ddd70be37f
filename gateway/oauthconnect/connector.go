package oauthconnect

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight"
)

// AuthMode is the connection auth_mode this package serves.
const AuthMode = "per_user_oauth"

const (
	// TicketTTL is the lifetime of a sign-in link.
	TicketTTL = 10 * time.Minute
	// FlowTTL is the time between Approve and the authorization server's
	// redirect back to the callback.
	FlowTTL = 10 * time.Minute
	// RefreshSkew: an access token this close to expiry is refreshed first.
	RefreshSkew = 60 * time.Second
)

// Config configures a Connector.
type Config struct {
	// PublicURL is the gateway's external base URL; the sign-in page is
	// PublicURL/oauth/connect and the redirect URI registered at each
	// authorization server is exactly PublicURL/oauth/callback. https, or
	// http on a loopback host (development). Required.
	PublicURL string
	// Connections resolves the connection named in a sign-in link (the
	// browser carries only its name). Required.
	Connections gateway.Connections
	// Store keeps the sealed grants; default NewMemoryTokenStore().
	Store TokenStore
	// Seal and Open encrypt and authenticate values at rest and the
	// sign-in tickets (the catalog keyring's AES-256-GCM). Required.
	Seal, Open func([]byte) ([]byte, error)
	// HTTPClient talks to the upstream's metadata and the authorization
	// server. Default: 30 s timeout, redirects not followed (a redirected
	// token request would resend the client secret and the code).
	HTTPClient *http.Client
	Logger     zerolog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// AppName is shown on the consent page; default "Mandate".
	AppName string
	// BrowserUser, when set, returns the catalog user signed in to the
	// browser (for example from the gateway's own login cookie); the
	// consent page and Approve then refuse a sign-in link of another user.
	// Without it, the sign-in link is a short-lived, single-use bearer
	// capability (see the threat model in doc.go).
	BrowserUser func(r *http.Request) (string, error)
	// OnConnected, when set, is called after a user connected (for example
	// to send MCP notifications/elicitation/complete).
	OnConnected func(user, connection string)
	// CSRFKey keys the consent forms' CSRF tokens (32 bytes or more).
	// Replicas behind a load balancer need the same one (a form rendered by
	// one may be posted to another); default: random per process.
	CSRFKey []byte
}

// Connector implements gateway.Credentials for auth_mode per_user_oauth and
// serves the sign-in pages (Handler).
type Connector struct {
	cfg         Config
	log         zerolog.Logger
	hc          *http.Client
	now         func() time.Time
	base        string // PublicURL without a trailing slash
	redirectURI string
	store       TokenStore
	appName     string
	cookiePath  string
	cookieName  string
	secure      bool
	csrfKey     [32]byte

	refreshes flight.Group[string]
	// locks serialise the read-modify-write of one (user, connection)
	// grant: a refresh, a new connect, Disconnect and Invalidate.
	locks [64]sync.Mutex

	mu    sync.Mutex
	cache map[storeKey]cachedToken

	dmu        sync.Mutex
	discovered map[string]discoveryEntry
	dflight    flight.Group[*endpoints]

	fmu        sync.Mutex
	flows      map[string]*flow     // by state
	usedTicket map[string]time.Time // consumed ticket nonces, until expiry
	lastPrune  time.Time

	afterMiss func() // tests: runs between a cache miss and the flight
}

type cachedToken struct {
	access             string
	expiry             time.Time
	resource, clientID string // what the grant is for (see load)
	loaded             time.Time
}

// SharedRecheck is how long a process uses a cached access token of a
// store other processes share (a Locker) before reading the grant again:
// a disconnect or a refresh on another replica is seen within it.
const SharedRecheck = 10 * time.Second

var _ gateway.Credentials = (*Connector)(nil)

// New returns a Connector.
func New(cfg Config) (*Connector, error) {
	if cfg.Seal == nil || cfg.Open == nil {
		return nil, errors.New("oauthconnect: Seal and Open are required (tokens are encrypted at rest)")
	}
	if cfg.Connections == nil {
		return nil, errors.New("oauthconnect: Connections is required")
	}
	base := strings.TrimRight(cfg.PublicURL, "/")
	u, err := url.Parse(base)
	if err != nil || checkEndpointURL(base) != nil || u.RawQuery != "" {
		return nil, fmt.Errorf("oauthconnect: PublicURL %q must be an absolute https URL (http only on loopback) without query", cfg.PublicURL)
	}
	k := &Connector{
		cfg: cfg, log: cfg.Logger, hc: cfg.HTTPClient, now: cfg.Now, base: base,
		redirectURI: base + "/oauth/callback", store: cfg.Store, appName: cfg.AppName,
		cookiePath: u.EscapedPath() + "/oauth/", secure: u.Scheme == "https",
		cache: map[storeKey]cachedToken{}, discovered: map[string]discoveryEntry{},
		flows: map[string]*flow{}, usedTicket: map[string]time.Time{},
	}
	k.cookieName = "mandate_oauth_session"
	if k.secure {
		k.cookieName = "__Secure-mandate_oauth_session"
	}
	if k.hc == nil {
		k.hc = &http.Client{
			Timeout:       30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.store == nil {
		k.store = NewMemoryTokenStore()
	}
	if k.appName == "" {
		k.appName = "Mandate"
	}
	if len(cfg.CSRFKey) >= len(k.csrfKey) {
		copy(k.csrfKey[:], cfg.CSRFKey)
	} else if cfg.CSRFKey != nil {
		return nil, errors.New("oauthconnect: CSRFKey must have at least 32 bytes")
	} else {
		rand.Read(k.csrfKey[:])
	}
	return k, nil
}

// RedirectURI is the exact redirect URI to register at each authorization
// server: PublicURL/oauth/callback.
func (k *Connector) RedirectURI() string { return k.redirectURI }

// errNeedSignIn is the internal form of SignInRequiredError.
var errNeedSignIn = errors.New("sign-in required")

func checkConnection(c *gateway.Connection) error {
	if c == nil {
		return errors.New("oauthconnect: no connection")
	}
	if c.AuthMode != AuthMode {
		return fmt.Errorf("oauthconnect: connection %s has auth_mode %q, not %s", c.Name, c.AuthMode, AuthMode)
	}
	if c.Options[catalog.OptClientID] == "" {
		return fmt.Errorf("connection %s: auth_mode per_user_oauth needs the option client_id (the client registered at the upstream's authorization server with redirect URI PublicURL/oauth/callback)", c.Name)
	}
	if err := checkEndpointURL(c.URL); err != nil {
		return fmt.Errorf("connection %s: url: %v", c.Name, err)
	}
	return nil
}

// Authorization returns "Bearer <access token>" of id.Subject's own grant
// for c, refreshing it first when it expires within RefreshSkew. A user who
// has not connected (or whose grant was revoked) gets a
// *gateway.SignInRequiredError with a sign-in link.
func (k *Connector) Authorization(ctx context.Context, c *gateway.Connection, id *gateway.Identity) (string, error) {
	if err := checkConnection(c); err != nil {
		return "", err
	}
	if id == nil || id.Subject == "" {
		return "", errors.New("oauthconnect: no authenticated subject")
	}
	key := storeKey{id.Subject, c.Name}
	cached := func() (string, bool) {
		now := k.now()
		k.mu.Lock()
		ct, ok := k.cache[key]
		k.mu.Unlock()
		if _, shared := k.store.(Locker); shared && now.Sub(ct.loaded) >= SharedRecheck {
			ok = false
		}
		return ct.access, ok && ct.resource == c.URL && ct.clientID == c.Options[catalog.OptClientID] && fresh(ct.expiry, now)
	}
	if access, ok := cached(); ok {
		return "Bearer " + access, nil
	}
	if k.afterMiss != nil {
		k.afterMiss()
	}
	// One load or refresh per (user, connection) at a time
	// (gateway/internal/flight); it runs on its own deadline so that one
	// caller's cancellation fails no other.
	access, err := k.refreshes.Do(ctx, id.Subject+"\x00"+c.Name, 45*time.Second, cached, func(lctx context.Context) (string, error) {
		return k.load(lctx, c, id.Subject)
	})
	if errors.Is(err, errNeedSignIn) {
		return "", k.signInError(c, id)
	}
	if err != nil {
		return "", err
	}
	return "Bearer " + access, nil
}

func fresh(expiry, now time.Time) bool {
	return expiry.IsZero() || now.Add(RefreshSkew).Before(expiry)
}

func (k *Connector) signInError(c *gateway.Connection, id *gateway.Identity) error {
	t, err := k.mintTicket(id.Subject, id.Actor, c.Name)
	if err != nil {
		return err
	}
	return &gateway.SignInRequiredError{Connection: c.Name, URL: k.SignInURL(c.Name, t)}
}

// SignInURL is the consent page URL for a ticket.
func (k *Connector) SignInURL(connection, ticket string) string {
	return k.base + "/oauth/connect?" + url.Values{"connection": {connection}, "ticket": {ticket}}.Encode()
}

// load returns a usable access token of user for c from the store,
// refreshing it when it is about to expire. errNeedSignIn when there is
// none.
func (k *Connector) load(ctx context.Context, c *gateway.Connection, user string) (string, error) {
	defer k.lock(storeKey{user, c.Name})()
	return k.loadLocked(ctx, c, user, false)
}

// loadLocked is load under the process's lock of the grant; shared says
// that the store's Locker lock is held too.
func (k *Connector) loadLocked(ctx context.Context, c *gateway.Connection, user string, shared bool) (string, error) {
	key := storeKey{user, c.Name}
	st, err := k.store.Get(ctx, user, c.Name)
	if errors.Is(err, ErrNoToken) {
		return "", errNeedSignIn
	}
	if err != nil {
		return "", fmt.Errorf("oauthconnect: token store: %w", err)
	}
	log := k.log.With().Str("user", user).Str("connection", c.Name).Logger()
	if st.Resource != c.URL || st.ClientID != c.Options[catalog.OptClientID] {
		// The connection now points elsewhere: the grant is for another
		// resource or client and is never sent to the new one.
		log.Info().Msg("per_user_oauth: connection url or client_id changed since the user connected; the grant is dropped")
		k.forget(ctx, key)
		return "", errNeedSignIn
	}
	access, err := k.openToken(st.AccessToken, purposeAccess, user, c.Name)
	if err != nil {
		log.Error().Msg("per_user_oauth: stored access token does not open (wrong key or tampered store)")
		return "", fmt.Errorf("oauthconnect: stored grant of %s for %s does not decrypt", user, c.Name)
	}
	now := k.now()
	if fresh(st.Expiry, now) {
		k.remember(key, access, st)
		return access, nil
	}
	stillValid := now.Before(st.Expiry)
	if len(st.RefreshToken) == 0 {
		if stillValid {
			return access, nil
		}
		return "", errNeedSignIn
	}
	if l, ok := k.store.(Locker); ok && !shared {
		// Another replica may be refreshing this grant: refresh under the
		// store's lock, after reading the grant again (when the other
		// replica refreshed first, its token is fresh and used as it is).
		unlock, err := l.Lock(ctx, user, c.Name)
		if err != nil {
			if stillValid {
				return access, nil
			}
			return "", fmt.Errorf("oauthconnect: token store: %w", err)
		}
		defer unlock()
		return k.loadLocked(ctx, c, user, true)
	}
	rt, err := k.openToken(st.RefreshToken, purposeRefresh, user, c.Name)
	if err != nil {
		log.Error().Msg("per_user_oauth: stored refresh token does not open (wrong key or tampered store)")
		return "", fmt.Errorf("oauthconnect: stored grant of %s for %s does not decrypt", user, c.Name)
	}
	ep, err := k.resolve(ctx, c)
	if err != nil {
		if stillValid {
			return access, nil
		}
		return "", err
	}
	if ep.Token != st.TokenEndpoint {
		// The refresh token goes only to the server that issued it.
		log.Info().Msg("per_user_oauth: token endpoint changed since the user connected; the grant is dropped")
		k.forget(ctx, key)
		return "", errNeedSignIn
	}
	tr, err := k.refresh(ctx, ep, st.TokenEndpoint, c, rt)
	var oe *oauthError
	if errors.As(err, &oe) && oe.Code == "invalid_grant" {
		log.Info().Msg("per_user_oauth: refresh token refused (invalid_grant); the user must connect again")
		k.forget(ctx, key)
		return "", errNeedSignIn
	}
	if err != nil {
		log.Warn().Err(err).Msg("per_user_oauth: refresh failed")
		if stillValid {
			return access, nil
		}
		return "", fmt.Errorf("oauthconnect: refreshing the grant of %s for %s: %w", user, c.Name, err)
	}
	nt := st.clone()
	if err := k.fill(nt, tr, now); err != nil {
		return "", err
	}
	nt.RefreshedAt = now
	if err := k.store.Put(ctx, nt); err != nil {
		return "", fmt.Errorf("oauthconnect: token store: %w", err)
	}
	k.remember(key, tr.AccessToken, nt)
	log.Debug().Bool("rotated", tr.RefreshToken != "").Msg("per_user_oauth: access token refreshed")
	return tr.AccessToken, nil
}

// fill seals a token response into t (keeping t's refresh token and scopes
// when the response has none).
func (k *Connector) fill(t *StoredToken, tr *tokenResponse, now time.Time) error {
	sa, err := k.sealToken(purposeAccess, t.User, t.Connection, tr.AccessToken)
	if err != nil {
		return err
	}
	t.AccessToken = sa
	if tr.RefreshToken != "" {
		sr, err := k.sealToken(purposeRefresh, t.User, t.Connection, tr.RefreshToken)
		if err != nil {
			return err
		}
		t.RefreshToken = sr
	}
	t.Expiry = time.Time{}
	if tr.ExpiresIn > 0 {
		t.Expiry = now.Add(tr.ExpiresIn).UTC()
	}
	if tr.Scope != "" {
		t.Scopes = strings.Fields(tr.Scope)
	}
	return nil
}

func (k *Connector) remember(key storeKey, access string, st *StoredToken) {
	k.mu.Lock()
	k.cache[key] = cachedToken{access: access, expiry: st.Expiry, resource: st.Resource, clientID: st.ClientID, loaded: k.now()}
	k.mu.Unlock()
}

func (k *Connector) drop(key storeKey) {
	k.mu.Lock()
	delete(k.cache, key)
	k.mu.Unlock()
}

func (k *Connector) forget(ctx context.Context, key storeKey) {
	k.drop(key)
	if err := k.store.Delete(ctx, key.user, key.connection); err != nil {
		k.log.Error().Err(err).Str("user", key.user).Str("connection", key.connection).Msg("per_user_oauth: token store delete failed")
	}
}

// Disconnect removes user's grant for connection (a full three-part
// name) and, when the authorization server has a revocation endpoint,
// asks it to revoke the refresh token (best effort).
func (k *Connector) Disconnect(ctx context.Context, user, connection string) error {
	key := storeKey{user, connection}
	unlock, err := k.lockGrant(ctx, key)
	if err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	k.drop(key)
	st, err := k.store.Get(ctx, user, connection)
	if err == nil {
		err = k.store.Delete(ctx, user, connection)
	}
	unlock()
	if errors.Is(err, ErrNoToken) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	k.log.Info().Str("user", user).Str("connection", connection).Msg("per_user_oauth: disconnected")
	k.revokeStored(ctx, st)
	return nil
}

func (k *Connector) revokeStored(ctx context.Context, st *StoredToken) {
	c, err := k.cfg.Connections.Connection(ctx, st.Connection)
	if err != nil || checkConnection(c) != nil || c.URL != st.Resource {
		return
	}
	ep, err := k.resolve(ctx, c)
	if err != nil || ep.Revocation == "" || ep.Token != st.TokenEndpoint {
		return
	}
	token, hint := "", ""
	if len(st.RefreshToken) > 0 {
		token, err = k.openToken(st.RefreshToken, purposeRefresh, st.User, st.Connection)
		hint = "refresh_token"
	} else {
		token, err = k.openToken(st.AccessToken, purposeAccess, st.User, st.Connection)
		hint = "access_token"
	}
	if err != nil {
		return
	}
	if err := k.revoke(ctx, ep, c, token, hint); err != nil {
		k.log.Warn().Err(err).Str("user", st.User).Str("connection", st.Connection).Msg("per_user_oauth: revocation failed")
	}
}

// Invalidate marks user's access token for connection as expired, for
// example after the upstream answered 401: the next Authorization
// refreshes it, or asks the user to connect again when there is no
// refresh token.
func (k *Connector) Invalidate(ctx context.Context, user, connection string) error {
	key := storeKey{user, connection}
	unlock, err := k.lockGrant(ctx, key)
	if err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	defer unlock()
	k.drop(key)
	st, err := k.store.Get(ctx, user, connection)
	if errors.Is(err, ErrNoToken) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	st.Expiry = k.now().Add(-time.Second).UTC()
	if err := k.store.Put(ctx, st); err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	return nil
}

// lockGrant takes the process's lock of a grant and, for a store shared
// with other processes, the store's lock too (a new connect, Disconnect
// and Invalidate never interleave with another replica's refresh).
func (k *Connector) lockGrant(ctx context.Context, key storeKey) (func(), error) {
	unlock := k.lock(key)
	l, ok := k.store.(Locker)
	if !ok {
		return unlock, nil
	}
	unlockShared, err := l.Lock(ctx, key.user, key.connection)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { unlockShared(); unlock() }, nil
}

// lock locks key's stripe and returns the unlock.
func (k *Connector) lock(key storeKey) func() {
	h := fnv.New32a()
	h.Write([]byte(key.user))
	h.Write([]byte{0})
	h.Write([]byte(key.connection))
	m := &k.locks[h.Sum32()%uint32(len(k.locks))]
	m.Lock()
	return m.Unlock
}

// Status lists who has connected what (no secrets); user "" lists all.
func (k *Connector) Status(ctx context.Context, user string) ([]Status, error) {
	all, err := k.store.List(ctx)
	if err != nil || user == "" {
		return all, err
	}
	out := all[:0]
	for _, s := range all {
		if s.User == user {
			out = append(out, s)
		}
	}
	return out, nil
}
