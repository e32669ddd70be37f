package devidp

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/privfile"
)

// Files in the data directory.
const (
	// SigningKeyFile holds the RS256 key access tokens are signed with.
	SigningKeyFile = "devidp-signing-key.json"
	// StateFile holds what local tools need to reach the running provider:
	// issuer, audience, the shared client secret and the user assertion key.
	StateFile = "dev-idp.json"
)

// ErrNoState means DATA_DIR/dev-idp.json does not exist: the development
// provider never ran on that data directory.
var ErrNoState = errors.New("devidp: no development identity provider state")

const stateWarning = "DEVELOPMENT ONLY: whoever reads this file can obtain a token for any user and agent from the Mandate development identity provider"

// state is the content of StateFile.
type state struct {
	Warning      string `json:"warning"`
	Issuer       string `json:"issuer"`
	Audience     string `json:"audience"`
	ClientSecret string `json:"client_secret"`
	// UserAssertionKey signs RFC 7523 assertions for the JWT bearer grant.
	UserAssertionKey *jose.JSONWebKey `json:"user_assertion_key"`
}

func (s *state) valid() error {
	switch {
	case s.Issuer == "":
		return errors.New("issuer is missing")
	case len(s.ClientSecret) < 16:
		return errors.New("client_secret is missing or shorter than 16 characters")
	case s.UserAssertionKey == nil || s.UserAssertionKey.IsPublic() || s.UserAssertionKey.KeyID == "":
		return errors.New("user_assertion_key is missing or not a private key with a kid")
	}
	if _, ok := s.UserAssertionKey.Key.(*rsa.PrivateKey); !ok {
		return errors.New("user_assertion_key is not an RSA private key")
	}
	return nil
}

// readState reads DATA_DIR/dev-idp.json; a missing file is ErrNoState.
func readState(dataDir string) (*state, error) {
	path := filepath.Join(dataDir, StateFile)
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoState, path)
	}
	if err != nil {
		return nil, err
	}
	s := new(state)
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("devidp: %s: %v", path, err)
	}
	if err := s.valid(); err != nil {
		return nil, fmt.Errorf("devidp: %s: %v (remove it to have a new one generated)", path, err)
	}
	return s, nil
}

// loadOrCreateShared returns the signing key and the state kept in a
// shared key store (created by the first replica), and writes the state
// with this process's issuer and audience to dataDir/dev-idp.json for
// local tools.
func loadOrCreateShared(ctx context.Context, keys keystore.Store, dataDir, issuer, audience string) (*jose.JSONWebKey, *state, error) {
	kb, err := keystore.GetOrCreate(ctx, keys, SigningKeyFile, func() ([]byte, error) {
		key, err := newRSAKey("")
		if err != nil {
			return nil, err
		}
		return json.Marshal(key)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("devidp: signing key: %w", err)
	}
	key := new(jose.JSONWebKey)
	if err := json.Unmarshal(kb.Data, key); err != nil {
		return nil, nil, fmt.Errorf("devidp: stored signing key: %v", err)
	}
	if _, ok := key.Key.(*rsa.PrivateKey); !ok || key.KeyID == "" {
		return nil, nil, errors.New("devidp: the stored signing key is not an RSA private key with a kid")
	}
	sb, err := keystore.GetOrCreate(ctx, keys, StateFile, func() ([]byte, error) {
		s, err := newState()
		if err != nil {
			return nil, err
		}
		return json.Marshal(s)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("devidp: client secret: %w", err)
	}
	s := new(state)
	if err := json.Unmarshal(sb.Data, s); err != nil {
		return nil, nil, fmt.Errorf("devidp: stored state: %v", err)
	}
	s.Warning, s.Issuer, s.Audience = stateWarning, issuer, audience
	if err := s.valid(); err != nil {
		return nil, nil, fmt.Errorf("devidp: stored state: %v", err)
	}
	if old, err := readState(dataDir); err != nil || old.Issuer != issuer || old.Audience != audience ||
		old.ClientSecret != s.ClientSecret || !sameKey(old.UserAssertionKey, s.UserAssertionKey) {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return nil, nil, err
		}
		if err := writePrivateFile(filepath.Join(dataDir, StateFile), append(b, '\n')); err != nil {
			return nil, nil, fmt.Errorf("devidp: writing %s: %w", StateFile, err)
		}
	}
	return key, s, nil
}

func sameKey(a, b *jose.JSONWebKey) bool {
	ka, ok := a.Key.(*rsa.PrivateKey)
	return ok && ka.Equal(b.Key)
}

// loadOrCreateState returns the state of dataDir, created on first start
// and rewritten when issuer or audience changed (secret and key are kept).
func loadOrCreateState(dataDir, issuer, audience string) (*state, error) {
	s, err := readState(dataDir)
	if errors.Is(err, ErrNoState) {
		s, err = newState()
	}
	if err != nil {
		return nil, err
	}
	if s.Issuer == issuer && s.Audience == audience && s.Warning == stateWarning {
		return s, nil
	}
	s.Warning, s.Issuer, s.Audience = stateWarning, issuer, audience
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writePrivateFile(filepath.Join(dataDir, StateFile), append(b, '\n')); err != nil {
		return nil, fmt.Errorf("devidp: writing %s: %w", StateFile, err)
	}
	return s, nil
}

func newState() (*state, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	key, err := newRSAKey("dev-user-assertion")
	if err != nil {
		return nil, err
	}
	return &state{ClientSecret: hex.EncodeToString(secret), UserAssertionKey: key}, nil
}

// loadOrCreateSigningKey returns the provider's signing key from
// DATA_DIR/devidp-signing-key.json, generated on first start.
func loadOrCreateSigningKey(dataDir string) (*jose.JSONWebKey, error) {
	path := filepath.Join(dataDir, SigningKeyFile)
	b, err := readPrivateFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, kerr := newRSAKey("")
		if kerr != nil {
			return nil, kerr
		}
		if b, err = json.MarshalIndent(key, "", "  "); err != nil {
			return nil, err
		}
		if err = createPrivateFile(path, append(b, '\n')); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("devidp: writing %s: %w", path, err)
		}
		// Another process may have won the race: whatever is there now is the key.
		b, err = readPrivateFile(path)
	}
	if err != nil {
		return nil, err
	}
	key := new(jose.JSONWebKey)
	if err := json.Unmarshal(b, key); err != nil {
		return nil, fmt.Errorf("devidp: %s: %v", path, err)
	}
	if _, ok := key.Key.(*rsa.PrivateKey); !ok || key.KeyID == "" {
		return nil, fmt.Errorf("devidp: %s does not hold an RSA private key with a kid (remove it to have a new one generated)", path)
	}
	return key, nil
}

// newRSAKey generates a 2048-bit RS256 signing key; kid defaults to the
// RFC 7638 thumbprint.
func newRSAKey(kid string) (*jose.JSONWebKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	key := &jose.JSONWebKey{Key: priv, Algorithm: string(jose.RS256), Use: "sig"}
	if kid == "" {
		pub := key.Public()
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, err
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	key.KeyID = kid
	return key, nil
}

// readPrivateFile reads a file that must not be readable by others.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("devidp: %s may be read by others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("devidp: %s is larger than 1 MiB", path)
	}
	return b, nil
}

// createPrivateFile writes data to path (mode 0600) unless path exists
// (os.ErrExist), so that concurrent first starts agree (catalog/privfile).
func createPrivateFile(path string, data []byte) error { return privfile.Create(path, data) }

// writePrivateFile writes data to path (mode 0600), replacing it atomically.
func writePrivateFile(path string, data []byte) error { return privfile.Write(path, data) }
