package pgwire

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

const (
	scramMechanism  = "SCRAM-SHA-256"
	scramIterations = 4096 // PostgreSQL's default scram_iterations
	scramSaltLen    = 16
	scramKeyLen     = sha256.Size
)

// MakeVerifier returns a SCRAM-SHA-256 verifier for password in
// PostgreSQL's format
// "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>",
// with a random 16-byte salt and 4096 iterations. The password is
// normalized with SASLprep when possible, as PostgreSQL does.
func MakeVerifier(password string) (string, error) {
	salt := make([]byte, scramSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pgwire: generating salt: %w", err)
	}
	creds, err := deriveCredentials(password, salt, scramIterations)
	if err != nil {
		return "", err
	}
	return formatVerifier(creds), nil
}

// CheckVerifier reports whether password matches verifier (PostgreSQL's
// SCRAM-SHA-256 format). A malformed verifier matches no password.
func CheckVerifier(verifier, password string) bool {
	creds, err := parseVerifier(verifier)
	if err != nil {
		return false
	}
	return checkCredentials(creds, password)
}

func checkCredentials(creds scram.StoredCredentials, password string) bool {
	got, err := deriveCredentials(password, []byte(creds.Salt), creds.Iters)
	if err != nil {
		return false
	}
	storedOK := hmac.Equal(got.StoredKey, creds.StoredKey)
	serverOK := hmac.Equal(got.ServerKey, creds.ServerKey)
	return storedOK && serverOK
}

// deriveCredentials computes StoredKey and ServerKey as RFC 5802 and
// PostgreSQL do. Like PostgreSQL, it uses the raw password when SASLprep
// rejects it.
func deriveCredentials(password string, salt []byte, iters int) (scram.StoredCredentials, error) {
	if iters <= 0 {
		return scram.StoredCredentials{}, errors.New("pgwire: SCRAM iteration count must be positive")
	}
	if prepped, err := stringprep.SASLprep.Prepare(password); err == nil {
		password = prepped
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, scramKeyLen)
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("pgwire: deriving SCRAM keys: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  storedKey[:],
		ServerKey:  hmacSHA256(salted, "Server Key"),
	}, nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func formatVerifier(c scram.StoredCredentials) string {
	b64 := base64.StdEncoding.EncodeToString
	return scramMechanism + "$" + strconv.Itoa(c.Iters) + ":" + b64([]byte(c.Salt)) +
		"$" + b64(c.StoredKey) + ":" + b64(c.ServerKey)
}

// parseVerifier parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
func parseVerifier(v string) (scram.StoredCredentials, error) {
	bad := func(what string) (scram.StoredCredentials, error) {
		return scram.StoredCredentials{}, fmt.Errorf("pgwire: invalid SCRAM verifier: %s", what)
	}
	mech, rest, ok := strings.Cut(v, "$")
	if !ok || mech != scramMechanism {
		return bad("not SCRAM-SHA-256")
	}
	factors, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return bad("missing keys")
	}
	iterStr, saltB64, ok := strings.Cut(factors, ":")
	if !ok {
		return bad("missing salt")
	}
	iters, err := strconv.Atoi(iterStr)
	if err != nil || iters <= 0 {
		return bad("iteration count")
	}
	salt, err := base64.StdEncoding.DecodeString(saltB64)
	if err != nil || len(salt) == 0 {
		return bad("salt")
	}
	storedB64, serverB64, ok := strings.Cut(keys, ":")
	if !ok {
		return bad("missing server key")
	}
	stored, err := base64.StdEncoding.DecodeString(storedB64)
	if err != nil || len(stored) != scramKeyLen {
		return bad("stored key")
	}
	server, err := base64.StdEncoding.DecodeString(serverB64)
	if err != nil || len(server) != scramKeyLen {
		return bad("server key")
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  stored,
		ServerKey:  server,
	}, nil
}

// fakeCredentials returns credentials for a user that does not exist or
// has no password. They are derived from a per-server secret so that the
// same user name always gets the same salt (a changing salt would reveal
// that the user does not exist), and no password matches them.
func (s *Server) fakeCredentials(user string) scram.StoredCredentials {
	mac := func(label string) []byte {
		m := hmac.New(sha256.New, s.fakeKey)
		m.Write([]byte(label))
		m.Write([]byte{0})
		m.Write([]byte(user))
		return m.Sum(nil)
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(mac("salt")[:scramSaltLen]), Iters: scramIterations},
		StoredKey:  mac("stored"),
		ServerKey:  mac("server"),
	}
}

func authFailed(user string) *Error {
	return fatalf(codeInvalidPassword, "password authentication failed for user %q", user)
}

// authenticate runs the authentication exchange for c.info.User. It returns
// nil on success, or the error to send as FATAL (or errClientGone).
func (c *conn) authenticate(ctx context.Context) error {
	user := c.info.User
	verifier, ok, err := c.srv.cfg.Auth.Verifier(ctx, user)
	if err != nil {
		return fmt.Errorf("looking up verifier: %w", err)
	}
	var creds scram.StoredCredentials
	if ok {
		creds, err = parseVerifier(verifier)
		if err != nil {
			c.log.Warn().Msg("stored password verifier is not a valid SCRAM-SHA-256 verifier")
			ok = false
		}
	}
	if !ok {
		creds = c.srv.fakeCredentials(user)
	}
	if c.srv.cfg.AllowCleartextOverTLS && c.info.TLS {
		return c.cleartextAuth(creds, ok)
	}
	return c.scramAuth(creds, ok)
}

func (c *conn) cleartextAuth(creds scram.StoredCredentials, userOK bool) error {
	if err := c.backend.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return err
	}
	c.send(&pgproto3.AuthenticationCleartextPassword{})
	c.flush()
	msg, err := c.receiveAuth()
	if err != nil {
		return err
	}
	pw, isPW := msg.(*pgproto3.PasswordMessage)
	if !isPW {
		return fatalf(codeProtocolViolation, "expected password response, got message type %q", messageType(msg))
	}
	// Check the fake credentials too, so that a missing user takes as long
	// as a wrong password.
	match := checkCredentials(creds, pw.Password)
	if !match || !userOK {
		c.log.Info().Msg("password authentication failed") // c.log carries the user
		return authFailed(c.info.User)
	}
	return nil
}

func (c *conn) scramAuth(creds scram.StoredCredentials, userOK bool) error {
	user := c.info.User
	// PostgreSQL ignores the user name inside the SCRAM messages (libpq and
	// pgx send an empty one) and authenticates the startup user.
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return err
	}
	conv := srv.NewConversation()

	if err := c.backend.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}})
	c.flush()
	msg, err := c.receiveAuth()
	if err != nil {
		return err
	}
	first, isFirst := msg.(*pgproto3.SASLInitialResponse)
	if !isFirst {
		return fatalf(codeProtocolViolation, "expected SASL response, got message type %q", messageType(msg))
	}
	if first.AuthMechanism != scramMechanism {
		return fatalf(codeProtocolViolation, "client selected an invalid SASL authentication mechanism")
	}
	serverFirst, err := conv.Step(string(first.Data))
	if err != nil {
		c.log.Debug().Err(err).Msg("malformed SCRAM client-first message")
		return fatalf(codeProtocolViolation, "malformed SCRAM message")
	}

	if err := c.backend.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	c.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	c.flush()
	msg, err = c.receiveAuth()
	if err != nil {
		return err
	}
	final, isFinal := msg.(*pgproto3.SASLResponse)
	if !isFinal {
		return fatalf(codeProtocolViolation, "expected SASL response, got message type %q", messageType(msg))
	}
	serverFinal, err := conv.Step(string(final.Data))
	if err != nil || !conv.Valid() || !userOK {
		c.log.Info().Msg("password authentication failed") // c.log carries the user
		return authFailed(user)
	}
	if err := c.backend.SetAuthType(pgproto3.AuthTypeSASLFinal); err != nil {
		return err
	}
	c.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)})
	return nil
}

// receiveAuth reads one message during authentication. Its error is
// errClientGone or an *Error to send as FATAL.
func (c *conn) receiveAuth() (pgproto3.FrontendMessage, error) {
	if c.writeErr != nil {
		return nil, errClientGone
	}
	msg, err := c.backend.Receive()
	if err != nil {
		return nil, c.readError(err)
	}
	return msg, nil
}
