package catalog

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
)

// Keyring seals secrets (connection client secrets, bearer tokens) with
// AES-256-GCM. The sealed form is version byte 1, the 12-byte nonce, then
// the ciphertext and tag.
type Keyring struct {
	aead cipher.AEAD
}

// NewKeyring returns a keyring for a 32-byte key.
func NewKeyring(key []byte) (*Keyring, error) {
	if len(key) != 32 {
		return nil, Errorf(CodeInvalidArgument, "master key must be 32 bytes, got %d", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, Internal(err, "master key")
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, Internal(err, "master key")
	}
	return &Keyring{aead: a}, nil
}

// Seal encrypts plaintext; aad binds it to its owner (e.g. the securable ID).
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, Internal(err, "nonce")
	}
	out := append([]byte{1}, nonce...)
	return k.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts a sealed value.
func (k *Keyring) Open(sealed, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != 1 {
		return nil, Errorf(CodeInternal, "sealed secret has an unknown format")
	}
	pt, err := k.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Msg: "cannot decrypt secret: wrong master key or corrupted data", Err: err}
	}
	return pt, nil
}

// SealMap seals a map of secrets as JSON; an empty map seals to nil.
func (k *Keyring) SealMap(m map[string]string, aad []byte) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, Internal(err, "secrets")
	}
	return k.Seal(b, aad)
}

// OpenMap opens a sealed map; nil opens to an empty map.
func (k *Keyring) OpenMap(sealed, aad []byte) (map[string]string, error) {
	out := map[string]string{}
	if len(sealed) == 0 {
		return out, nil
	}
	b, err := k.Open(sealed, aad)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, Internal(errors.New("bad secret json"), "secrets")
	}
	return out, nil
}

// SecretsAAD is the additional data binding a securable's sealed secrets to it.
func SecretsAAD(id ID) []byte {
	b := []byte("mandate-securable-secrets:")
	for i := 0; i < 8; i++ {
		b = append(b, byte(id>>(8*i)))
	}
	return b
}
