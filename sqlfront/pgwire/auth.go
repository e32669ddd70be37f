package pgwire

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/mandatehq/mandate/catalog/pgscram"
)

const (
	scramMechanism  = pgscram.Mechanism
	scramIterations = pgscram.Iterations
	scramSaltLen    = pgscram.SaltLen
)

// MakeVerifier returns a SCRAM-SHA-256 verifier for password in
// PostgreSQL's format (pgscram.Verifier).
func MakeVerifier(password string) (string, error) { return pgscram.Verifier(password) }

// CheckVerifier reports whether password matches verifier (PostgreSQL's
// SCRAM-SHA-256 format; pgscram.Check). A malformed verifier matches no
// password.
func CheckVerifier(verifier, password string) bool { return pgscram.Check(verifier, password) }

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
		creds, err = pgscram.Parse(verifier)
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
	match := pgscram.CheckCredentials(creds, pw.Password)
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
