package catalog

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Personal access tokens (CREATE ACCESS TOKEN): a static key for agents
// that need one (coding agents are configured with one). A token acts as
// its user, through its agent when it names one (the agent's own grants
// still apply at every call: the on-behalf-of rule). Only the SHA-256 of
// the token is stored, in a TypeAccessToken securable under the
// metastore, owned by the user; the token itself is shown once, by the
// statement that creates it. Tokens are looked up by hash in an index the
// Model keeps (Model.VerifyAccessToken), checked against the current
// catalog on every call: a dropped or expired token, or one whose user or
// agent is gone, is refused at once.

// AccessTokenPrefix starts every access token, so that secret scanners and
// people recognise one.
const AccessTokenPrefix = "mnd_"

// accessTokenLen is the length of a token: the prefix and 32 random bytes
// in unpadded base64url.
const accessTokenLen = len(AccessTokenPrefix) + 43

// Token lifetimes.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 5 * 365 * 24 * time.Hour
	MinTokenLifetime     = time.Minute
	// MaxTokensPerUser bounds the access tokens of one user.
	MaxTokensPerUser = 100
)

// Options of an access token securable.
const (
	optTokenUser    = "user"  // the user's ID
	optTokenAgent   = "agent" // the agent's ID, or absent
	optTokenHash    = "hash"  // hex SHA-256 of the token
	optTokenExpires = "expires"
)

// NewAccessToken returns a fresh token and its hash (HashAccessToken).
func NewAccessToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", Internal(err, "generate an access token")
	}
	token = AccessTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashAccessToken(token), nil
}

// HashAccessToken returns the hex SHA-256 of a token: what the catalog
// stores and looks tokens up by.
func HashAccessToken(token string) string {
	sum := AccessTokenSum(token)
	return hex.EncodeToString(sum[:])
}

// AccessTokenSum is the SHA-256 of a token, whose hex is HashAccessToken:
// a cache key that takes no allocation for a token of an access token's
// length.
func AccessTokenSum(token string) [sha256.Size]byte {
	var b [accessTokenLen]byte
	if len(token) != len(b) {
		return sha256.Sum256([]byte(token))
	}
	copy(b[:], token)
	return sha256.Sum256(b[:])
}

// LooksLikeAccessToken reports whether s has the shape of an access token
// (the prefix and the length), so that callers can tell it from a JWT
// without a lookup.
func LooksLikeAccessToken(s string) bool {
	return len(s) == accessTokenLen && strings.HasPrefix(s, AccessTokenPrefix)
}

// TokenIDOf is the stable, non-reversible id of a token with the given
// hash: safe to log and to show (SHOW ACCESS TOKENS, audit records).
func TokenIDOf(hash string) string {
	if len(hash) > 16 {
		hash = hash[:16]
	}
	return "pat_" + hash
}

// ParseTokenLifetime parses the EXPIRES IN value: "<n> <unit>" with unit
// minute(s), hour(s), day(s), week(s), month(s) (30 days) or year(s) (365
// days), or a Go duration ("720h"). From MinTokenLifetime to
// MaxTokenLifetime.
func ParseTokenLifetime(s string) (time.Duration, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	bad := func() (time.Duration, error) {
		return 0, Errorf(CodeInvalidArgument, "invalid token lifetime %q: want for example '90 days', '12 hours' or '1 year' (from 1 minute to 5 years)", s)
	}
	var d time.Duration
	if f := strings.Fields(t); len(f) == 2 {
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n <= 0 || n > 100000 {
			return bad()
		}
		units := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour,
			"week": 7 * 24 * time.Hour, "month": 30 * 24 * time.Hour, "year": 365 * 24 * time.Hour}
		u, ok := units[strings.TrimSuffix(f[1], "s")]
		if !ok {
			return bad()
		}
		d = time.Duration(n) * u
	} else {
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return bad()
		}
	}
	if d < MinTokenLifetime || d > MaxTokenLifetime {
		return bad()
	}
	return d, nil
}

// AccessToken is an access token as SHOW ACCESS TOKENS and the verifier
// see it (never the token).
type AccessToken struct {
	Name    string
	TokenID string // TokenIDOf its hash
	User    *Principal
	Agent   *Principal // nil: the user acts itself
	Created time.Time
	Expires time.Time // zero: never
	Comment string
}

// accessToken describes token securable s (ok false when its user is gone).
func (m *Model) accessToken(s *Securable) (AccessToken, bool) {
	t := AccessToken{Name: s.Name, TokenID: TokenIDOf(s.Options[optTokenHash]), Created: s.Created, Comment: s.Comment}
	uid, _ := strconv.ParseInt(s.Options[optTokenUser], 10, 64)
	u, ok := m.principals[ID(uid)]
	if !ok {
		return t, false
	}
	t.User = u
	if a := s.Options[optTokenAgent]; a != "" {
		aid, _ := strconv.ParseInt(a, 10, 64)
		if t.Agent, ok = m.principals[ID(aid)]; !ok {
			return t, false
		}
	}
	if e := s.Options[optTokenExpires]; e != "" {
		exp, err := time.Parse(time.RFC3339Nano, e)
		if err != nil {
			return t, false
		}
		t.Expires = exp
	}
	return t, true
}

// AccessTokens returns the access tokens, of user (nil: everyone's),
// sorted by user and name.
func (m *Model) AccessTokens(user *Principal) []AccessToken {
	var out []AccessToken
	for _, id := range m.tokens {
		s := m.securables[id]
		t, ok := m.accessToken(s)
		if !ok || (user != nil && t.User.ID != user.ID) {
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User.Name != out[j].User.Name {
			return out[i].User.Name < out[j].User.Name
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ErrInvalidAccessToken is the one answer for a token that is not valid
// (unknown, dropped, malformed, or its user or agent is gone), so that the
// answer tells nothing about which; expired tokens say so.
var ErrInvalidAccessToken = Errorf(CodePermissionDenied, "invalid access token")

// VerifyAccessToken checks token against the current catalog at time now:
// it must be a token the catalog holds (looked up by its SHA-256, the
// stored hash compared in constant time), not expired, its user and agent
// still existing. Errors are ErrInvalidAccessToken or an expiry error
// (CodePermissionDenied).
func (m *Model) VerifyAccessToken(token string, now time.Time) (AccessToken, error) {
	if !LooksLikeAccessToken(token) {
		return AccessToken{}, ErrInvalidAccessToken
	}
	return m.VerifyAccessTokenHash(HashAccessToken(token), now)
}

// VerifyAccessTokenHash is VerifyAccessToken for a token's hash
// (HashAccessToken): what gateway nodes send the catalog, so that the
// token itself never leaves the node that received it.
func (m *Model) VerifyAccessTokenHash(hash string, now time.Time) (AccessToken, error) {
	id, ok := m.tokens[hash]
	if !ok {
		return AccessToken{}, ErrInvalidAccessToken
	}
	s := m.securables[id]
	if s == nil || subtle.ConstantTimeCompare([]byte(s.Options[optTokenHash]), []byte(hash)) != 1 {
		return AccessToken{}, ErrInvalidAccessToken
	}
	t, ok := m.accessToken(s)
	if !ok {
		return AccessToken{}, ErrInvalidAccessToken
	}
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return AccessToken{}, Errorf(CodePermissionDenied, "access token %s expired at %s", t.Name, t.Expires.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// tokenByName finds an access token by name.
func (m *Model) tokenByName(name string) (*Securable, bool) {
	return m.Child(m.metastore, TypeAccessToken, name)
}

// CreateAccessToken stores an access token with the given hash
// (NewAccessToken) for user, acting through agent ("" for none), that
// expires after lifetime (0: DefaultTokenLifetime). Users create tokens
// for themselves, metastore admins for anyone. name "" gets a generated
// name. The agent must be an existing service principal: the token acts
// as the user through it, so the agent's own grants apply at every call.
func (tx *Tx) CreateAccessToken(name, user, agent string, lifetime time.Duration, comment *string, hash string) error {
	if name == "" && len(hash) >= 12 {
		name = "token_" + hash[:12]
	}
	tx.audit(TypeAccessToken, QuoteIdent(name))
	if err := validPrincipalName("access token", name); err != nil {
		return err
	}
	if len(hash) != 64 {
		return Errorf(CodeInvalidArgument, "access token hash must be a hex SHA-256")
	}
	u, err := tx.principal(KindUser, user)
	if err != nil {
		return err
	}
	if u.ID != tx.caller.ID {
		if !tx.m.IsAdmin(tx.caller.ID) {
			return Errorf(CodePermissionDenied, "permission denied to create an access token for %s: %s is not a metastore admin", QuoteIdent(user), QuoteIdent(tx.caller.Name)).
				WithHint("users create access tokens for themselves: CREATE ACCESS TOKEN ... FOR USER " + QuoteIdent(tx.caller.Name))
		}
	}
	opts := map[string]string{optTokenUser: strconv.FormatInt(int64(u.ID), 10), optTokenHash: hash}
	if agent != "" {
		a, err := tx.principal(KindServicePrincipal, agent)
		if err != nil {
			return err
		}
		opts[optTokenAgent] = strconv.FormatInt(int64(a.ID), 10)
	}
	if lifetime == 0 {
		lifetime = DefaultTokenLifetime
	}
	if lifetime < MinTokenLifetime || lifetime > MaxTokenLifetime {
		return Errorf(CodeInvalidArgument, "token lifetime must be from %s to 5 years", MinTokenLifetime)
	}
	now := tx.svc.now().UTC()
	opts[optTokenExpires] = now.Add(lifetime).Format(time.RFC3339Nano)
	if _, ok := tx.m.tokenByName(name); ok {
		return Errorf(CodeAlreadyExists, "access token %s already exists", QuoteIdent(name))
	}
	if _, ok := tx.m.tokens[hash]; ok {
		return Errorf(CodeAlreadyExists, "access token already exists")
	}
	if n := len(tx.m.AccessTokens(u)); n >= MaxTokensPerUser {
		return Errorf(CodeLimitExceeded, "user %s has %d access tokens, the most a user may have", QuoteIdent(u.Name), n).
			WithHint("drop tokens no longer used: DROP ACCESS TOKEN name")
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeAccessToken, Parent: tx.m.metastore, Name: name, Owner: u.ID,
		Comment: deref(comment), Options: opts, Created: now}})
	return nil
}

// DropAccessToken drops (revokes) an access token: its user or a metastore
// admin may. Another user's token is reported as not existing.
func (tx *Tx) DropAccessToken(name string, ifExists bool) error {
	tx.audit(TypeAccessToken, QuoteIdent(name))
	s, ok := tx.m.tokenByName(name)
	if ok && s.Owner != tx.caller.ID && !tx.m.IsAdmin(tx.caller.ID) {
		ok = false
	}
	if !ok {
		if ifExists {
			return nil
		}
		return Errorf(CodeNotFound, "access token %s does not exist", QuoteIdent(name))
	}
	tx.do(opDeleteSecurable{s.ID})
	return nil
}

// dropAttachmentsOf drops what goes with principal p when it is dropped:
// the access tokens of which it is the user or the agent, and the rate
// limits and budgets that name it.
func (tx *Tx) dropAttachmentsOf(p *Principal) {
	me := strconv.FormatInt(int64(p.ID), 10)
	var drop []*Securable
	for _, s := range tx.m.securables {
		switch s.Type {
		case TypeAccessToken:
			if s.Options[optTokenUser] == me || s.Options[optTokenAgent] == me {
				drop = append(drop, s)
			}
		case TypeRateLimit, TypeBudget:
			if s.Options[optLimitPrincipal] == me {
				drop = append(drop, s)
			}
		}
	}
	sort.Slice(drop, func(i, j int) bool { return drop[i].ID < drop[j].ID })
	for _, s := range drop {
		tx.do(opDeleteSecurable{s.ID})
	}
}

// String describes the token for messages (no secret).
func (t AccessToken) String() string {
	return fmt.Sprintf("access token %s (%s)", QuoteIdent(t.Name), t.TokenID)
}
