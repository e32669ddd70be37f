package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/privfile"
)

// Node token sources.
const (
	TokenEnv  = "MANDATE_NODE_TOKEN"
	TokenFile = "node-token"
	// MinTokenLength is the shortest token accepted from the environment
	// or the file.
	MinTokenLength = 16
)

// LoadOrCreateToken returns the node token that gateway nodes present:
// MANDATE_NODE_TOKEN when set, else the content of DATA_DIR/node-token,
// which is created at first start (32 random bytes in hex, mode 0600,
// written to a temporary file and linked into place, so that concurrent
// first starts agree on one token and a crash leaves no partial file).
// A token file that others may read is refused.
func LoadOrCreateToken(dataDir string) (string, error) {
	if v := strings.TrimSpace(os.Getenv(TokenEnv)); v != "" {
		if len(v) < MinTokenLength {
			return "", fmt.Errorf("%s must be at least %d characters long", TokenEnv, MinTokenLength)
		}
		return v, nil
	}
	path := filepath.Join(dataDir, TokenFile)
	for range 3 {
		tok, err := readToken(path)
		if !errors.Is(err, os.ErrNotExist) {
			return tok, err
		}
		if err := createToken(path); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("creating the node token %s: %w", path, err)
		}
	}
	return "", fmt.Errorf("the node token %s keeps disappearing", path)
}

func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the node token %s may be read by others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b := make([]byte, 1024)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("reading the node token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if len(tok) < MinTokenLength {
		return "", fmt.Errorf("the node token %s holds fewer than %d characters: remove it to have one generated, or set %s", path, MinTokenLength, TokenEnv)
	}
	return tok, nil
}

// createToken writes a new token to path unless path exists (os.ErrExist):
// a hard link never replaces an existing file, so the first start wins.
func createToken(path string) error {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	return privfile.Create(path, []byte(hex.EncodeToString(raw)+"\n"))
}

// LoadOrCreateSharedToken is LoadOrCreateToken for replicas sharing a key
// store (--store postgres://): MANDATE_NODE_TOKEN when set, else the token
// in keys (created by the first replica to start), so that a gateway node
// behind a load balancer is accepted by every replica. The token is also
// written to DATA_DIR/node-token (mode 0600), where operators find it.
func LoadOrCreateSharedToken(ctx context.Context, dataDir string, keys keystore.Store) (string, error) {
	if v := strings.TrimSpace(os.Getenv(TokenEnv)); v != "" {
		return LoadOrCreateToken(dataDir)
	}
	b, err := keystore.GetOrCreate(ctx, keys, TokenFile, func() ([]byte, error) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		return []byte(hex.EncodeToString(raw) + "\n"), nil
	})
	if err != nil {
		return "", fmt.Errorf("the node token in the key store: %w", err)
	}
	tok := strings.TrimSpace(string(b.Data))
	if len(tok) < MinTokenLength {
		return "", fmt.Errorf("the node token in the key store holds fewer than %d characters", MinTokenLength)
	}
	path := filepath.Join(dataDir, TokenFile)
	if old, err := readToken(path); err != nil || old != tok {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return "", err
		}
		if err := privfile.Write(path, []byte(tok+"\n")); err != nil {
			return "", fmt.Errorf("writing the node token %s: %w", path, err)
		}
	}
	return tok, nil
}
