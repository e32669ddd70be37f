package oauthconnect

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"
)

// Purposes of sealed values. The purpose and the owner are sealed with the
// value, so a sealed access token cannot be replayed as a refresh token,
// as a sign-in ticket, or as another user's token.
const (
	purposeAccess  = "mandate-oauthconnect-access-token"
	purposeRefresh = "mandate-oauthconnect-refresh-token"
	purposeTicket  = "mandate-oauthconnect-signin-ticket"
	purposeFlow    = "mandate-oauthconnect-pending-flow"
)

type sealedValue struct {
	Purpose    string `json:"p"`
	User       string `json:"u"`
	Connection string `json:"c"`
	Value      string `json:"v,omitempty"`
	// Ticket fields.
	Actor   string `json:"a,omitempty"`
	Nonce   string `json:"n,omitempty"`
	Expires int64  `json:"e,omitempty"`
}

var errSealed = errors.New("oauthconnect: sealed value does not open or does not belong here")

func (k *Connector) seal(v sealedValue) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	out, err := k.cfg.Seal(b)
	if err != nil {
		return nil, errors.New("oauthconnect: cannot seal a value")
	}
	return out, nil
}

// open opens a sealed value and checks its purpose and, for tokens, its
// owner. The error says nothing about the content.
func (k *Connector) open(b []byte, purpose, user, connection string) (*sealedValue, error) {
	pt, err := k.cfg.Open(b)
	if err != nil {
		return nil, errSealed
	}
	var v sealedValue
	if err := json.Unmarshal(pt, &v); err != nil || v.Purpose != purpose {
		return nil, errSealed
	}
	if purpose != purposeTicket && (v.User != user || v.Connection != connection) {
		return nil, errSealed
	}
	return &v, nil
}

func (k *Connector) sealToken(purpose, user, connection, token string) ([]byte, error) {
	return k.seal(sealedValue{Purpose: purpose, User: user, Connection: connection, Value: token})
}

func (k *Connector) openToken(b []byte, purpose, user, connection string) (string, error) {
	v, err := k.open(b, purpose, user, connection)
	if err != nil {
		return "", err
	}
	return v.Value, nil
}

// ticket is the opaque handle in a sign-in URL: sealed (so authentic and
// unreadable), short-lived, bound to one user and connection, and
// consumed when the user approves or denies.
type ticket struct {
	User, Actor, Connection, Nonce string
	Expires                        time.Time
}

const maxTicketLen = 4096

func (k *Connector) mintTicket(user, actor, connection string) (string, error) {
	b, err := k.seal(sealedValue{
		Purpose: purposeTicket, User: user, Connection: connection, Actor: actor,
		Nonce: randomString(16), Expires: k.now().Add(TicketTTL).Unix(),
	})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var (
	errTicketInvalid = errors.New("this sign-in link is not valid (it may have been altered or cut short); ask your agent for a new one")
	errTicketExpired = errors.New("this sign-in link has expired; ask your agent for a new one")
)

func (k *Connector) parseTicket(s string) (*ticket, error) {
	if s == "" || len(s) > maxTicketLen {
		return nil, errTicketInvalid
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s) // strict: one encoding per ticket
	if err != nil {
		return nil, errTicketInvalid
	}
	v, err := k.open(b, purposeTicket, "", "")
	if err != nil || v.User == "" || v.Connection == "" || v.Nonce == "" {
		return nil, errTicketInvalid
	}
	t := &ticket{User: v.User, Actor: v.Actor, Connection: v.Connection, Nonce: v.Nonce, Expires: time.Unix(v.Expires, 0)}
	if !k.now().Before(t.Expires) {
		return nil, errTicketExpired
	}
	return t, nil
}

// randomString returns n random bytes, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("oauthconnect: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
