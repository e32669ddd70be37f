package upstream

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
)

// mintClaims are the claims of a mandate_jwt token: an RFC 9068 access
// token (typ at+jwt) with RFC 8693 delegation (act).
type mintClaims struct {
	Issuer    string    `json:"iss"`
	Subject   string    `json:"sub"`
	Actor     *actClaim `json:"act,omitempty"`
	Audience  string    `json:"aud"`
	Scope     string    `json:"scope,omitempty"`
	IssuedAt  int64     `json:"iat"`
	NotBefore int64     `json:"nbf"`
	Expiry    int64     `json:"exp"`
	ID        string    `json:"jti"`
	ClientID  string    `json:"client_id"`
}

type actClaim struct {
	Subject string `json:"sub"`
}

func mintKey(c *gateway.Connection, id *gateway.Identity) cacheKey {
	return cacheKey{
		kind:     kindMint,
		conn:     c.Name,
		audience: audience(c),
		scopes:   c.Options[catalog.OptScopes],
		subject:  id.Subject,
		actor:    id.Actor,
	}
}

// mandateJWT returns a token Mandate signs for the upstream, reusing a
// cached one until RefreshMargin before it expires.
func (cr *Credentials) mandateJWT(c *gateway.Connection, id *gateway.Identity) (string, int64, bool, error) {
	now := cr.now()
	if err := checkInbound(c, id, now); err != nil {
		return "", 0, false, err
	}
	if cr.cfg.Keys == nil {
		return "", 0, false, fmt.Errorf("upstream %s: mandate_jwt is not configured on this gateway (no signing keys)", c.Name)
	}
	k := mintKey(c, id)
	if k.audience == "" {
		return "", 0, false, fmt.Errorf("upstream %s: mandate_jwt needs the connection url or audience", c.Name)
	}
	// A cached token is reused only if it does not outlive this caller's
	// inbound token.
	var limit int64
	if !id.Expiry.IsZero() {
		limit = id.Expiry.UnixNano()
	}
	if e, ok := cr.cache.get(&k, now.UnixNano()); ok && (limit == 0 || e.expires <= limit) {
		cr.stats.hits.Add(1)
		return e.value, e.expires, true, nil
	}
	cr.stats.misses.Add(1)
	if h := cr.testHookMiss; h != nil {
		h()
	}
	// Minting is local and cheap; concurrent misses may each mint, the
	// last one stays cached.
	e, err := cr.mint(c, id, now, &k)
	if err != nil {
		return "", 0, false, err
	}
	if e.refreshAt > now.UnixNano() {
		cr.cache.put(&k, e, now.UnixNano())
	}
	return e.value, e.expires, false, nil
}

func (cr *Credentials) mint(c *gateway.Connection, id *gateway.Identity, now time.Time, k *cacheKey) (cacheEntry, error) {
	st, err := cr.cfg.Keys.state()
	if err != nil {
		return cacheEntry{}, fmt.Errorf("upstream %s: signing keys: %w", c.Name, err)
	}
	exp := now.Add(cr.lifetime)
	if !id.Expiry.IsZero() && id.Expiry.Before(exp) {
		exp = id.Expiry
	}
	// Never outlive the signing key's publication (holds by construction:
	// KeyRetention exceeds MaxMintLifetime).
	if st.publishedUntil.Before(exp) {
		exp = st.publishedUntil
	}
	iat := now.Unix()
	if exp.Unix() <= iat {
		return cacheEntry{}, fmt.Errorf("upstream %s: the caller's token expires too soon to mint an upstream token", c.Name)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return cacheEntry{}, fmt.Errorf("upstream: jti: %w", err)
	}
	claims := mintClaims{
		Issuer:    cr.cfg.Issuer,
		Subject:   id.Subject,
		Audience:  k.audience,
		Scope:     strings.Join(c.Scopes(), " "),
		IssuedAt:  iat,
		NotBefore: iat,
		Expiry:    exp.Unix(),
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		ClientID:  MintClientID,
	}
	if id.Actor != "" {
		claims.Actor = &actClaim{Subject: id.Actor}
	}
	payload, err := json.Marshal(&claims)
	if err != nil {
		return cacheEntry{}, err
	}
	jws, err := st.current.signer.Sign(payload)
	if err != nil {
		return cacheEntry{}, fmt.Errorf("upstream %s: sign: %w", c.Name, err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return cacheEntry{}, fmt.Errorf("upstream %s: sign: %w", c.Name, err)
	}
	cr.stats.mints.Add(1)
	expT := time.Unix(claims.Expiry, 0)
	cr.log.Debug().Str("connection", c.Name).Str("subject", id.Subject).Str("actor", id.Actor).
		Str("kid", st.current.kid).Str("jti", claims.ID).Time("exp", expT).Msg("upstream: minted mandate_jwt")
	return cacheEntry{
		value:     "Bearer " + tok,
		refreshAt: refreshAt(now, expT).UnixNano(),
		expires:   expT.UnixNano(),
	}, nil
}
