package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// This file is the contract between the data plane's parts: what each
// stage needs from the rest of Mandate. gateway/pipeline runs the stages
// in order for every call of every protocol (see doc.go); the interfaces
// below are implemented by the sub-packages (identity, upstream, node) and
// by the catalog (catalog.AuditLog, enforce).

// Identity is the authenticated caller of one request, as catalog names.
type Identity struct {
	// Subject is the catalog principal the call is made for: the human
	// (a USER) or, when an agent calls on its own, the agent's SERVICE
	// PRINCIPAL.
	Subject string
	// Actor is the agent's service principal acting on behalf of Subject
	// (from the token's RFC 8693 "act" claim); "" when Subject acts itself.
	Actor string
	// Scopes granted to the inbound token.
	Scopes []string
	// Issuer and ClientID of the inbound token (audit and diagnostics).
	Issuer   string
	ClientID string
	// Expiry of the inbound token; nothing derived from it (cached upstream
	// credentials, sessions) outlives it.
	Expiry time.Time
	// Token is the verified inbound bearer token. It is used only as the
	// subject_token of an RFC 8693 exchange and is NEVER sent upstream.
	Token string `json:"-"`
	// TokenID is a stable, non-reversible id of the inbound token (for
	// example a truncated SHA-256), safe to log and to use as a cache key.
	TokenID string
}

// Authenticator verifies the bearer token of an inbound request. resource
// is the canonical URL of the addressed endpoint (for example
// https://gw.example/mcp/my_github_mcp); the token's audience must be the
// gateway's canonical URL or resource. Errors are *AuthError.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, resource string) (*Identity, error)
}

// AuthError is an authentication failure, rendered per the MCP
// authorization spec: Status 401 with WWW-Authenticate: Bearer
// resource_metadata="...", error="invalid_token"; or 403 with
// error="insufficient_scope" and Scope.
type AuthError struct {
	Status      int    // 401 or 403
	Code        string // invalid_request, invalid_token, insufficient_scope
	Description string // for the caller; never contains the token
	Scope       string // the scopes needed (insufficient_scope)
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

// Connection is a connection as the data plane needs it, resolved from
// the catalog at Revision. Secrets are decrypted; never log them.
type Connection struct {
	// Name is the full three-part name (system.ai.my_github_mcp).
	Name     string
	URL      string // the upstream MCP endpoint
	AuthMode string // none, shared_principal, per_user_oauth, token_exchange, mandate_jwt
	// Options are the connection's non-secret options by name (url,
	// auth_mode, scopes, audience, client_id, token_endpoint,
	// authorization_endpoint, include_tools).
	Options map[string]string
	// Secrets are the decrypted secret options (client_secret,
	// bearer_token).
	Secrets  map[string]string `json:"-"`
	Revision catalog.Revision
}

// Scopes returns the connection's space-separated scopes option as a list.
func (c *Connection) Scopes() []string { return fieldsOf(c.Options[catalog.OptScopes]) }

// Connections resolves connection names ("my_github_mcp" is
// system.ai.my_github_mcp; three-part names address other schemas).
// An unknown connection is ErrNoConnection.
type Connections interface {
	Connection(ctx context.Context, name string) (*Connection, error)
}

// ErrNoConnection is returned by Connections for an unknown name.
var ErrNoConnection = errors.New("gateway: no such connection")

// ModelService is a model service (what agents call on the LLM endpoint)
// as the data plane needs it, resolved from the catalog at Revision.
// Provider API keys are decrypted: never log them.
type ModelService struct {
	// Name is the full three-part name (system.ai.frontier).
	Name string
	// Destinations share the traffic by Weight (they sum to 100); one is
	// picked at random per call.
	Destinations []ModelDestination
	// Fallbacks are tried in order when the chosen destination answers
	// 429 or 5xx, cannot be reached or times out (the split is not
	// applied again). Their Weight is 0.
	Fallbacks []ModelDestination
	// Timeout bounds one attempt (0: the gateway's default).
	Timeout time.Duration
	// Tags are the service's own request tags (its tags option); a call's
	// X-Mandate-Request-Tags are added to them.
	Tags map[string]string
	// LogPayloads and SampleRate: capture request and response bodies
	// into system.ai_gateway.payloads for this share of calls (0..1).
	LogPayloads bool
	SampleRate  float64
	// TracePayloads puts prompt and completion content on trace spans.
	TracePayloads bool
	// Options are every non-secret option by name (sensitivity, egress,
	// ...).
	Options  map[string]string
	Revision catalog.Revision
}

// ModelDestination is one provider service and the model to ask there.
type ModelDestination struct {
	Provider *ProviderService
	Model    string
	Weight   int
}

// ProviderService is a model provider service: an external provider and
// the credential the gateway presents to it.
type ProviderService struct {
	// Name is the full three-part name (system.ai.openai_prod).
	Name string
	// Provider is openai, anthropic or openai_compatible.
	Provider string
	// URL is the provider's API base URL (https://api.openai.com/v1).
	URL string
	// APIKey is the decrypted api_key option ("" for none).
	APIKey string `json:"-"`
	// Prices are USD per million tokens by model name; a model missing
	// here has no known price.
	Prices map[string]ModelPrice
	// Options are every non-secret option by name.
	Options map[string]string
}

// ModelPrice is what one model costs, in USD per million tokens of each
// class. Cached input and cache writes not given in the prices option
// cost as much as input (HasCachedInput, HasCacheWrite false).
type ModelPrice struct {
	Input, Output, CachedInput, CacheWrite float64
	HasCachedInput, HasCacheWrite          bool
	// CacheWrite1h is the price of cache writes with Anthropic's 1-hour
	// TTL (CacheWrite: the 5-minute one); not given (HasCacheWrite1h
	// false), twice the input (the rule is limits.Price's).
	CacheWrite1h    float64
	HasCacheWrite1h bool
	// Cache1h is true at a destination that bills 1-hour cache writes
	// (an Anthropic provider): the worst case a budget reserves for its
	// input includes their price.
	Cache1h bool
	// Tools are the provider service's tool_prices (USD per 1,000 uses
	// of each server tool kind billed per use), the same for its every
	// model.
	Tools catalog.ToolPrices
}

// ModelServices resolves model service names as Connections resolves
// connections ("frontier" is system.ai.frontier; three-part names address
// other schemas). An unknown model service is ErrNoModelService. List
// returns every model service's full name (GET /llm/v1/models shows those
// the caller may EXECUTE). A ModelService answered may be shared by every
// call (a cache's): callers read it and never change it.
type ModelServices interface {
	ModelService(ctx context.Context, name string) (*ModelService, error)
	ListModelServices(ctx context.Context) ([]string, error)
}

// ErrNoModelService is returned by ModelServices for an unknown name.
var ErrNoModelService = errors.New("gateway: no such model service")

// AccessTokens verifies Mandate's personal access tokens (CREATE ACCESS
// TOKEN): a token acts as its user, through its agent when it names one.
// An unknown, expired or dropped token is an *AuthError with Status 401.
// Implementations check the token against the current catalog revision
// on every call, so a dropped token is refused at once. The Identity may
// be shared by every call presenting the token: treat it as read-only.
type AccessTokens interface {
	VerifyAccessToken(ctx context.Context, token string) (*Identity, error)
}

// Credentials produce the credential the upstream receives for one call
// of id through c, by c.AuthMode. The result is the full Authorization
// header value ("Bearer ...") or "" for none. Implementations cache within
// the credential's lifetime and never return or forward id.Token.
type Credentials interface {
	Authorization(ctx context.Context, c *Connection, id *Identity) (string, error)
}

// CredentialInvalidator is implemented by Credentials that cache
// (upstream.Credentials): after the upstream refused a credential with
// HTTP 401 or 403, Invalidate drops it from the cache if it is still the
// value cached for (c, id) (a fresher one a concurrent call obtained
// stays) and reports whether a new Authorization call can produce another
// one (false for modes with nothing to renew). The pipeline then retries
// the call once.
type CredentialInvalidator interface {
	Invalidate(c *Connection, id *Identity, rejected string) bool
}

// SignInRequiredError means the user must first connect their account
// (per_user_oauth): URL is the Mandate sign-in URL to open.
type SignInRequiredError struct {
	Connection string
	URL        string
}

func (e *SignInRequiredError) Error() string {
	return fmt.Sprintf("connect your account for %s first: open %s", e.Connection, e.URL)
}

// Authorizer answers authorization questions: enforce/client.Client for a
// remote catalog, *enforce.Engine in process. An error (stale, unavailable)
// means deny.
type Authorizer interface {
	Authorize(ctx context.Context, r enforce.Request) (enforce.Decision, error)
}

// AuditSink records audit events. Record returns once the event is durable
// (group commit: many concurrent Records share one fsync).
type AuditSink interface {
	Record(ctx context.Context, ev catalog.AuditEvent) error
}

// AuditQueue is an AuditSink that also takes events without waiting for
// them (catalog.AuditLog, node.AuditSink): Enqueue returns at once, and the
// ack's Wait returns once the event is durable; Submit is for events
// nobody waits for. Events reach the store in the order they were queued.
// With it the pipeline records a call in two phases (the request while
// the upstream call is in flight, then the completion; see
// catalog.AuditEvent.Completes); a sink without it gets one Record per
// call, written before the answer.
type AuditQueue interface {
	AuditSink
	Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error)
	Submit(ctx context.Context, ev catalog.AuditEvent) error
}

func fieldsOf(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ' ' || s[i] == '\t' || s[i] == ',' {
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
