package oauthconnect

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
)

// maxFlows bounds the sign-ins in progress (approved, not yet called back);
// maxUserFlows those of one user, whose next replaces their oldest
// (replacedFlows), so that no user can fill the table and hold off
// everyone else's sign-ins. maxUsedTickets bounds the used sign-in
// tickets a node remembers (until they expire) without a FlowStore: when
// it is full, new tickets are refused rather than old ones forgotten (a
// forgotten ticket could be used again).
const (
	maxFlows       = 10000
	maxUserFlows   = 16
	maxUsedTickets = 4 * maxFlows
)

// replacedFlows is the rule of maxUserFlows: given the expiry of each of
// a user's sign-ins in progress (by state), it returns the states to drop
// so that one more fits, the oldest (first to expire) first. The
// in-memory table and a shared FlowStore both apply it.
func replacedFlows(own map[string]time.Time) []string {
	n := len(own) - (maxUserFlows - 1)
	if n <= 0 {
		return nil
	}
	states := make([]string, 0, len(own))
	for s := range own {
		states = append(states, s)
	}
	slices.SortFunc(states, func(a, b string) int {
		if c := own[a].Compare(own[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return states[:n]
}

// flow is one approved sign-in between the redirect to the authorization
// server and its redirect back: found by state, used once.
type flow struct {
	user, actor, connection string
	resource, clientID      string
	tokenEndpoint, issuer   string
	issParameter            bool
	authMethods             []string
	verifier                string
	session                 [32]byte // SHA-256 of the browser's session cookie
	expires                 time.Time
}

// Handler serves the sign-in pages: GET /oauth/connect (consent page),
// POST /oauth/connect (Approve or Deny) and GET /oauth/callback (the
// authorization server's redirect). Mount it at PublicURL/oauth/ with or
// without stripping the prefix.
func (k *Connector) Handler() http.Handler { return http.HandlerFunc(k.serveHTTP) }

func (k *Connector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Referrer-Policy", "no-referrer") // the ticket must not leak through Referer
	h.Set("X-Frame-Options", "DENY")        // no clickjacking of Approve
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", cspFor(""))
	p := r.URL.Path
	if i := strings.LastIndex(p, "/oauth/"); i >= 0 {
		p = p[i+len("/oauth/"):]
	} else {
		p = strings.TrimPrefix(p, "/")
	}
	switch {
	case p == "connect" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		k.serveConsent(w, r)
	case p == "connect" && r.Method == http.MethodPost:
		k.serveApprove(w, r)
	case p == "callback" && r.Method == http.MethodGet:
		k.serveCallback(w, r)
	case p == "connect" || p == "callback":
		h.Set("Allow", map[bool]string{true: "GET, POST", false: "GET"}[p == "connect"])
		k.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "This page does not accept "+r.Method+".")
	default:
		k.fail(w, r, http.StatusNotFound, "not_found", "There is no such sign-in page.")
	}
}

func cspFor(formOrigin string) string {
	fa := "'none'"
	if formOrigin != "" {
		// Chrome applies form-action to the redirect after the POST too.
		fa = "'self' " + formOrigin
	}
	return "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'; form-action " + fa
}

// serveConsent shows who is about to connect what, with Approve and Deny.
func (k *Connector) serveConsent(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	t, c, ep, ok := k.checkTicket(w, r, q.Get("ticket"), q.Get("connection"))
	if !ok {
		return
	}
	session := k.session(w, r)
	au, _ := url.Parse(ep.Authorization)
	uu, _ := url.Parse(c.URL)
	w.Header().Set("Content-Security-Policy", cspFor(au.Scheme+"://"+au.Host))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	consentPage.Execute(w, map[string]any{
		"App": k.appName, "User": t.User, "Actor": t.Actor, "Connection": t.Connection,
		"UpstreamHost": uu.Host, "ASHost": au.Host, "Scopes": strings.Join(c.Scopes(), " "),
		"Ticket": q.Get("ticket"), "CSRF": k.csrf(session, t.Nonce), "Expires": t.Expires.UTC().Format(time.RFC1123),
	})
}

// serveApprove handles the consent form: checks the CSRF token (bound to
// this browser's session and this ticket), consumes the ticket, and sends
// the browser to the authorization server with PKCE, state and resource.
func (k *Connector) serveApprove(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		k.fail(w, r, http.StatusBadRequest, "invalid_request", "The form could not be read.")
		return
	}
	f := r.PostForm
	t, c, ep, ok := k.checkTicket(w, r, f.Get("ticket"), f.Get("connection"))
	if !ok {
		return
	}
	cookie, err := r.Cookie(k.cookieName)
	if err != nil || cookie.Value == "" {
		k.fail(w, r, http.StatusBadRequest, "no_session",
			"This browser did not send the sign-in session cookie. Allow cookies for this site and open the sign-in link again.")
		return
	}
	if !hmac.Equal([]byte(f.Get("csrf")), []byte(k.csrf(cookie.Value, t.Nonce))) {
		k.fail(w, r, http.StatusBadRequest, "invalid_csrf",
			"This form was not sent by the sign-in page in this browser. Open the sign-in link again.")
		return
	}
	if err := k.consumeTicket(r.Context(), t); errors.Is(err, errTicketUsed) {
		k.fail(w, r, http.StatusBadRequest, "ticket_used", "This sign-in link was already used; ask your agent for a new one.")
		return
	} else if err != nil {
		k.fail(w, r, http.StatusServiceUnavailable, "busy", "Too many sign-ins are in progress; try again in a few minutes.")
		return
	}
	if f.Get("action") != "approve" {
		k.log.Info().Str("user", t.User).Str("connection", t.Connection).Msg("per_user_oauth: user denied the connection")
		k.page(w, http.StatusOK, "Not connected", fmt.Sprintf("You did not connect your account for %s. You can close this window.", t.Connection))
		return
	}
	verifier, challenge := pkcePair()
	state := randomString(32)
	fl := &flow{
		user: t.User, actor: t.Actor, connection: t.Connection, resource: c.URL, clientID: c.Options[catalog.OptClientID],
		tokenEndpoint: ep.Token, issuer: ep.Issuer, issParameter: ep.IssParameter, authMethods: ep.AuthMethods,
		verifier: verifier, session: sha256.Sum256([]byte(cookie.Value)), expires: k.now().Add(FlowTTL),
	}
	if !k.putFlow(r.Context(), state, fl) {
		k.fail(w, r, http.StatusServiceUnavailable, "busy", "Too many sign-ins are in progress; try again in a few minutes.")
		return
	}
	au, _ := url.Parse(ep.Authorization)
	aq := au.Query()
	aq.Set("response_type", "code")
	aq.Set("client_id", fl.clientID)
	aq.Set("redirect_uri", k.redirectURI)
	if s := c.Scopes(); len(s) > 0 {
		aq.Set("scope", strings.Join(s, " "))
	}
	aq.Set("state", state)
	aq.Set("code_challenge", challenge)
	aq.Set("code_challenge_method", "S256")
	aq.Set("resource", c.URL)
	au.RawQuery = aq.Encode()
	w.Header().Set("Content-Security-Policy", cspFor(au.Scheme+"://"+au.Host))
	http.Redirect(w, r, au.String(), http.StatusSeeOther)
}

// checkTicket validates a sign-in ticket and resolves its connection and
// authorization server; it renders the error and returns ok=false.
func (k *Connector) checkTicket(w http.ResponseWriter, r *http.Request, raw, connection string) (*ticket, *gateway.Connection, *endpoints, bool) {
	t, err := k.parseTicket(raw)
	if err != nil {
		k.fail(w, r, http.StatusBadRequest, "invalid_ticket", err.Error())
		return nil, nil, nil, false
	}
	if connection != t.Connection {
		k.fail(w, r, http.StatusBadRequest, "invalid_ticket", "This sign-in link is for another connection; ask your agent for a new one.")
		return nil, nil, nil, false
	}
	if k.ticketUsed(r.Context(), t.Nonce) {
		k.fail(w, r, http.StatusBadRequest, "ticket_used", "This sign-in link was already used; ask your agent for a new one.")
		return nil, nil, nil, false
	}
	if !k.browserIs(w, r, t.User) {
		return nil, nil, nil, false
	}
	c, err := k.cfg.Connections.Connection(r.Context(), t.Connection)
	if err == nil {
		err = checkConnection(c)
	}
	if err != nil {
		k.log.Warn().Err(err).Str("connection", t.Connection).Msg("per_user_oauth: sign-in for an unusable connection")
		k.fail(w, r, http.StatusBadRequest, "invalid_connection",
			fmt.Sprintf("Connection %s cannot be connected now (it was dropped or changed). Ask your administrator.", t.Connection))
		return nil, nil, nil, false
	}
	ep, err := k.resolve(r.Context(), c)
	if err != nil {
		k.log.Warn().Err(err).Str("connection", c.Name).Msg("per_user_oauth: authorization server discovery failed")
		k.fail(w, r, http.StatusBadGateway, "discovery_failed",
			fmt.Sprintf("The authorization server of connection %s could not be found: %v", c.Name, err))
		return nil, nil, nil, false
	}
	return t, c, ep, true
}

// browserIs enforces Config.BrowserUser when it is set.
func (k *Connector) browserIs(w http.ResponseWriter, r *http.Request, user string) bool {
	if k.cfg.BrowserUser == nil {
		return true
	}
	who, err := k.cfg.BrowserUser(r)
	if err != nil || who == "" {
		k.fail(w, r, http.StatusUnauthorized, "login_required", "Sign in to "+k.appName+" in this browser first, then open the sign-in link again.")
		return false
	}
	if who != user {
		k.fail(w, r, http.StatusForbidden, "wrong_user",
			fmt.Sprintf("This sign-in link is for %s, but this browser is signed in as %s.", user, who))
		return false
	}
	return true
}

// serveCallback completes a sign-in: the state must be known, unexpired,
// unused and started in this browser; the code is exchanged with the PKCE
// verifier and the resource at the token endpoint chosen at Approve.
func (k *Connector) serveCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fl := k.takeFlow(r.Context(), q.Get("state"))
	if fl == nil {
		k.fail(w, r, http.StatusBadRequest, "invalid_state",
			"This sign-in response is unknown, expired or was already used. Start again from a new sign-in link.")
		return
	}
	if !k.now().Before(fl.expires) {
		k.fail(w, r, http.StatusBadRequest, "invalid_state", "This sign-in took too long. Start again from a new sign-in link.")
		return
	}
	cookie, err := r.Cookie(k.cookieName)
	if err != nil {
		k.fail(w, r, http.StatusBadRequest, "invalid_state", "This sign-in was started in a different browser session.")
		return
	}
	if sum := sha256.Sum256([]byte(cookie.Value)); subtle.ConstantTimeCompare(sum[:], fl.session[:]) != 1 {
		k.log.Warn().Str("user", fl.user).Str("connection", fl.connection).Msg("per_user_oauth: callback from another browser session refused")
		k.fail(w, r, http.StatusBadRequest, "invalid_state", "This sign-in was started in a different browser session.")
		return
	}
	if !k.browserIs(w, r, fl.user) {
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "The authorization server did not grant access: " + clean(e, 64)
		if d := q.Get("error_description"); d != "" {
			msg += " (" + clean(d, 200) + ")"
		}
		k.fail(w, r, http.StatusBadRequest, "access_denied", msg)
		return
	}
	// RFC 9207 mix-up defence.
	if iss := q.Get("iss"); fl.issuer != "" && (iss != "" && iss != fl.issuer || iss == "" && fl.issParameter) {
		k.fail(w, r, http.StatusBadRequest, "invalid_issuer", "The response did not come from the expected authorization server.")
		return
	}
	code := q.Get("code")
	if code == "" {
		k.fail(w, r, http.StatusBadRequest, "invalid_request", "The authorization server's response has no code.")
		return
	}
	c, err := k.cfg.Connections.Connection(r.Context(), fl.connection)
	if err == nil {
		err = checkConnection(c)
	}
	if err != nil || c.URL != fl.resource || c.Options[catalog.OptClientID] != fl.clientID {
		k.fail(w, r, http.StatusBadRequest, "invalid_connection",
			fmt.Sprintf("Connection %s was dropped or changed during the sign-in. Start again from a new sign-in link.", fl.connection))
		return
	}
	tr, err := k.exchangeCode(r.Context(), &endpoints{AuthMethods: fl.authMethods}, fl.tokenEndpoint, c, code, fl.verifier)
	if err != nil {
		k.log.Warn().Err(err).Str("user", fl.user).Str("connection", fl.connection).Msg("per_user_oauth: code exchange failed")
		status := http.StatusBadGateway
		var oe *oauthError
		if errors.As(err, &oe) {
			status = http.StatusBadRequest
		}
		k.fail(w, r, status, "token_exchange_failed", "The authorization server did not issue a token: "+err.Error())
		return
	}
	if err := k.storeGrant(r.Context(), fl, c, tr); err != nil {
		k.log.Error().Err(err).Str("user", fl.user).Str("connection", fl.connection).Msg("per_user_oauth: storing the grant failed")
		k.fail(w, r, http.StatusInternalServerError, "store_failed", "Your account could not be saved; try again later.")
		return
	}
	k.log.Info().Str("user", fl.user).Str("actor", fl.actor).Str("connection", fl.connection).
		Bool("refreshable", tr.RefreshToken != "").Msg("per_user_oauth: account connected")
	if k.cfg.OnConnected != nil {
		k.cfg.OnConnected(fl.user, fl.connection)
	}
	uu, _ := url.Parse(c.URL)
	k.page(w, http.StatusOK, "Connected",
		fmt.Sprintf("Your account at %s is connected for %s as %s. You can close this window and return to your agent.",
			uu.Host, fl.connection, fl.user))
}

func (k *Connector) storeGrant(ctx context.Context, fl *flow, c *gateway.Connection, tr *tokenResponse) error {
	key := storeKey{fl.user, fl.connection}
	unlock, err := k.lockGrant(ctx, key)
	if err != nil {
		return err
	}
	defer unlock()
	now := k.now()
	st := &StoredToken{
		User: fl.user, Connection: fl.connection, Scopes: c.Scopes(),
		Resource: fl.resource, TokenEndpoint: fl.tokenEndpoint, ClientID: fl.clientID, ConnectedAt: now.UTC(),
	}
	if err := k.fill(st, tr, now); err != nil {
		return err
	}
	if err := k.store.Put(ctx, st); err != nil {
		return err
	}
	k.remember(key, tr.AccessToken, st)
	return nil
}

// session returns this browser's sign-in session id, creating one when
// there is none. It binds a consent form and a state to the browser
// that opened the sign-in link.
func (k *Connector) session(w http.ResponseWriter, r *http.Request) string {
	v := randomString(32)
	if c, err := r.Cookie(k.cookieName); err == nil && len(c.Value) >= 32 && len(c.Value) <= 128 {
		v = c.Value
	}
	// Set (again) so the cookie outlives this ticket and the flow after it.
	http.SetCookie(w, &http.Cookie{
		Name: k.cookieName, Value: v, Path: k.cookiePath, HttpOnly: true, Secure: k.secure,
		// Lax: sent on the authorization server's top-level redirect back,
		// not on cross-site POSTs.
		SameSite: http.SameSiteLaxMode, MaxAge: int((TicketTTL + FlowTTL) / time.Second),
	})
	return v
}

func (k *Connector) csrf(session, nonce string) string {
	m := hmac.New(sha256.New, k.csrfKey[:])
	m.Write([]byte("csrf\x00" + session + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (k *Connector) ticketUsed(ctx context.Context, nonce string) bool {
	if fs, ok := k.store.(FlowStore); ok {
		used, err := fs.NonceUsed(ctx, nonce)
		return used || err != nil // fail closed
	}
	k.fmu.Lock()
	defer k.fmu.Unlock()
	_, used := k.usedTicket[nonce]
	return used
}

var (
	errTicketUsed  = errors.New("sign-in ticket already used")
	errTicketsFull = errors.New("too many sign-in tickets in use")
)

// consumeTicket marks a ticket used: errTicketUsed when it already was;
// another error when it cannot be recorded (the store failed, or
// maxUsedTickets are remembered): the ticket is refused either way.
func (k *Connector) consumeTicket(ctx context.Context, t *ticket) error {
	if fs, ok := k.store.(FlowStore); ok {
		first, err := fs.UseNonce(ctx, t.Nonce, t.Expires)
		if err != nil {
			k.log.Error().Err(err).Msg("per_user_oauth: token store")
			return err
		}
		if !first {
			return errTicketUsed
		}
		return nil
	}
	k.fmu.Lock()
	defer k.fmu.Unlock()
	k.pruneLocked(false)
	if _, used := k.usedTicket[t.Nonce]; used {
		return errTicketUsed
	}
	if len(k.usedTicket) >= maxUsedTickets {
		if k.pruneLocked(true); len(k.usedTicket) >= maxUsedTickets {
			k.log.Warn().Int("used_tickets", len(k.usedTicket)).Msg("per_user_oauth: used sign-in tickets at their bound; sign-in refused")
			return errTicketsFull
		}
	}
	k.usedTicket[t.Nonce] = t.Expires
	return nil
}

func (k *Connector) putFlow(ctx context.Context, state string, fl *flow) bool {
	if fs, ok := k.store.(FlowStore); ok {
		err := k.putSharedFlow(ctx, fs, state, fl)
		if err != nil {
			k.log.Error().Err(err).Msg("per_user_oauth: token store")
		}
		return err == nil
	}
	k.fmu.Lock()
	defer k.fmu.Unlock()
	k.pruneLocked(false)
	own := map[string]time.Time{}
	for s, f := range k.flows {
		if f.user == fl.user {
			own[s] = f.expires
		}
	}
	for _, s := range replacedFlows(own) {
		delete(k.flows, s)
	}
	if len(k.flows) >= maxFlows {
		return false
	}
	k.flows[state] = fl
	return true
}

// takeFlow removes and returns the flow of state: a state is used once,
// whatever the outcome.
func (k *Connector) takeFlow(ctx context.Context, state string) *flow {
	if state == "" || len(state) > 256 {
		return nil
	}
	if fs, ok := k.store.(FlowStore); ok {
		fl, err := k.takeSharedFlow(ctx, fs, state)
		if err != nil {
			k.log.Error().Err(err).Msg("per_user_oauth: token store")
		}
		return fl
	}
	k.fmu.Lock()
	defer k.fmu.Unlock()
	fl := k.flows[state]
	delete(k.flows, state)
	return fl
}

// flowJSON is a flow as a shared FlowStore keeps it (sealed).
type flowJSON struct {
	User          string    `json:"user"`
	Actor         string    `json:"actor,omitempty"`
	Connection    string    `json:"connection"`
	Resource      string    `json:"resource"`
	ClientID      string    `json:"client_id"`
	TokenEndpoint string    `json:"token_endpoint"`
	Issuer        string    `json:"issuer,omitempty"`
	IssParameter  bool      `json:"iss_parameter,omitempty"`
	AuthMethods   []string  `json:"auth_methods,omitempty"`
	Verifier      string    `json:"verifier"`
	Session       [32]byte  `json:"session"`
	Expires       time.Time `json:"expires"`
}

// flowAAD binds a sealed flow to its state.
func flowAAD(state string) string { return "mandate-oauthconnect-flow\x00" + state }

func (k *Connector) putSharedFlow(ctx context.Context, fs FlowStore, state string, fl *flow) error {
	b, err := json.Marshal(flowJSON{User: fl.user, Actor: fl.actor, Connection: fl.connection, Resource: fl.resource,
		ClientID: fl.clientID, TokenEndpoint: fl.tokenEndpoint, Issuer: fl.issuer, IssParameter: fl.issParameter,
		AuthMethods: fl.authMethods, Verifier: fl.verifier, Session: fl.session, Expires: fl.expires})
	if err != nil {
		return err
	}
	sealed, err := k.seal(sealedValue{Purpose: purposeFlow, Connection: flowAAD(state), Value: string(b)})
	if err != nil {
		return err
	}
	return fs.PutFlow(ctx, fl.user, state, sealed, fl.expires)
}

func (k *Connector) takeSharedFlow(ctx context.Context, fs FlowStore, state string) (*flow, error) {
	sealed, err := fs.TakeFlow(ctx, state)
	if err != nil || sealed == nil {
		return nil, err
	}
	v, err := k.open(sealed, purposeFlow, "", flowAAD(state))
	if err != nil {
		return nil, err
	}
	var j flowJSON
	if err := json.Unmarshal([]byte(v.Value), &j); err != nil {
		return nil, err
	}
	if !k.now().Before(j.Expires) {
		return nil, nil
	}
	return &flow{user: j.User, actor: j.Actor, connection: j.Connection, resource: j.Resource, clientID: j.ClientID,
		tokenEndpoint: j.TokenEndpoint, issuer: j.Issuer, issParameter: j.IssParameter, authMethods: j.AuthMethods,
		verifier: j.Verifier, session: j.Session, expires: j.Expires}, nil
}

// pruneLocked drops expired flows and used tickets, at most once a
// minute unless force.
func (k *Connector) pruneLocked(force bool) {
	now := k.now()
	if !force && now.Sub(k.lastPrune) < time.Minute {
		return
	}
	k.lastPrune = now
	for s, fl := range k.flows {
		if !now.Before(fl.expires) {
			delete(k.flows, s)
		}
	}
	for n, exp := range k.usedTicket {
		if !now.Before(exp) {
			delete(k.usedTicket, n)
		}
	}
}

// fail renders an error as JSON ({"error", "error_description"}) for
// clients that ask for JSON, as an HTML page otherwise.
func (k *Connector) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if a := r.Header.Get("Accept"); strings.Contains(a, "application/json") && !strings.Contains(a, "text/html") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": msg})
		return
	}
	k.page(w, status, "Cannot connect", msg)
}

func (k *Connector) page(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	messagePage.Execute(w, map[string]string{"App": k.appName, "Title": title, "Message": msg})
}

const pageStyle = `<style>body{font-family:system-ui,sans-serif;background:#f6f7f9;margin:0}
main{max-width:36rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.4rem}code{background:#eef;padding:0 .2em}.warn{color:#8a4b00}
button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:4px;border:1px solid #888;cursor:pointer}
button[value=approve]{background:#1f6feb;color:#fff;border-color:#1f6feb}</style>`

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.App}}: connect your account at {{.UpstreamHost}}</title>` + pageStyle + `</head>
<body><main>
<h1>Connect your account at {{.UpstreamHost}}</h1>
<p><strong>{{.App}}</strong> wants to connect your account at <strong>{{.UpstreamHost}}</strong>
for connection <code>{{.Connection}}</code> as user <strong>{{.User}}</strong>.</p>
{{if .Actor}}<p>The request came from agent <strong>{{.Actor}}</strong> acting for {{.User}}.</p>{{end}}
<p>If you approve, you sign in at <strong>{{.ASHost}}</strong>, and agents you use through {{.App}} may then call
{{.UpstreamHost}} with your account{{if .Scopes}} and these permissions: <code>{{.Scopes}}</code>{{end}}.</p>
<p class="warn">If you are not {{.User}}, or you did not ask an agent to use {{.UpstreamHost}}, choose Deny.</p>
<form method="post" action="connect">
<input type="hidden" name="connection" value="{{.Connection}}">
<input type="hidden" name="ticket" value="{{.Ticket}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
<p><small>This link expires at {{.Expires}}.</small></p>
</main></body></html>
`))

var messagePage = template.Must(template.New("message").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.App}}: {{.Title}}</title>` + pageStyle + `</head>
<body><main><h1>{{.Title}}</h1><p>{{.Message}}</p></main></body></html>
`))
