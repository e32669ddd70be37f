package pgscram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

// The verifiers' mechanism and PostgreSQL's defaults: iterations, salt
// and key lengths.
const (
	Mechanism  = "SCRAM-SHA-256"
	Iterations = 4096 // PostgreSQL's default scram_iterations
	SaltLen    = 16
	KeyLen     = sha256.Size
)

// Verifier returns a SCRAM-SHA-256 verifier for password in
// PostgreSQL's format
// "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>",
// with a random 16-byte salt and 4096 iterations. The password is
// normalized with SASLprep when possible, as PostgreSQL does.
func Verifier(password string) (string, error) {
	salt := make([]byte, SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("pgscram: generating salt: %w", err)
	}
	creds, err := Derive(password, salt, Iterations)
	if err != nil {
		return "", err
	}
	return Format(creds), nil
}

// Check reports whether password matches verifier (PostgreSQL's
// SCRAM-SHA-256 format). A malformed verifier matches no password.
func Check(verifier, password string) bool {
	creds, err := Parse(verifier)
	if err != nil {
		return false
	}
	return CheckCredentials(creds, password)
}

func CheckCredentials(creds scram.StoredCredentials, password string) bool {
	got, err := Derive(password, []byte(creds.Salt), creds.Iters)
	if err != nil {
		return false
	}
	storedOK := hmac.Equal(got.StoredKey, creds.StoredKey)
	serverOK := hmac.Equal(got.ServerKey, creds.ServerKey)
	return storedOK && serverOK
}

// Derive computes StoredKey and ServerKey as RFC 5802 and
// PostgreSQL do. Like PostgreSQL, it uses the raw password when SASLprep
// rejects it.
func Derive(password string, salt []byte, iters int) (scram.StoredCredentials, error) {
	if iters <= 0 {
		return scram.StoredCredentials{}, errors.New("pgscram: SCRAM iteration count must be positive")
	}
	if prepped, err := stringprep.SASLprep.Prepare(password); err == nil {
		password = prepped
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iters, KeyLen)
	if err != nil {
		return scram.StoredCredentials{}, fmt.Errorf("pgscram: deriving SCRAM keys: %w", err)
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

func Format(c scram.StoredCredentials) string {
	b64 := base64.StdEncoding.EncodeToString
	return Mechanism + "$" + strconv.Itoa(c.Iters) + ":" + b64([]byte(c.Salt)) +
		"$" + b64(c.StoredKey) + ":" + b64(c.ServerKey)
}

// Parse parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
func Parse(v string) (scram.StoredCredentials, error) {
	bad := func(what string) (scram.StoredCredentials, error) {
		return scram.StoredCredentials{}, fmt.Errorf("pgscram: invalid SCRAM verifier: %s", what)
	}
	mech, rest, ok := strings.Cut(v, "$")
	if !ok || mech != Mechanism {
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
	if err != nil || len(stored) != KeyLen {
		return bad("stored key")
	}
	server, err := base64.StdEncoding.DecodeString(serverB64)
	if err != nil || len(server) != KeyLen {
		return bad("server key")
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iters},
		StoredKey:  stored,
		ServerKey:  server,
	}, nil
}
