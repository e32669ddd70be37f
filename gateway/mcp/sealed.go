package mcp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// Sealed session ids. With Config.SessionKey the id a client gets is the
// session itself (its upstream id, subject, actor, connection, URL
// elicitation and creation time) sealed with AES-256-GCM: any gateway
// holding the key — every replica and gateway node of one installation —
// serves a session another opened, and the upstream's id still never
// reaches the client in clear.
const (
	sealedVersion = 1
	// maxSealedField bounds each string sealed into an id; a session whose
	// upstream id is longer gets a random id (served by its gateway only).
	maxSealedField = 1024
	// maxSealedID bounds the ids a gateway tries to open.
	maxSealedID = 8192
	// sealedAD binds the ciphertext to its use.
	sealedAD = "mandate mcp session v1"
)

type sessionSealer struct{ aead cipher.AEAD }

func newSessionSealer(key []byte) (*sessionSealer, error) {
	if len(key) != 32 {
		return nil, errors.New("mcp: Config.SessionKey must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sessionSealer{aead: aead}, nil
}

// seal returns s sealed as an id, and false when a field is too long to
// seal.
func (k *sessionSealer) seal(s *session, created time.Time) (string, bool) {
	fields := [...]string{s.upstream, s.subject, s.actor, s.conn}
	n := 2 + 8
	for _, f := range fields {
		if len(f) > maxSealedField {
			return "", false
		}
		n += binary.MaxVarintLen16 + len(f)
	}
	plain := make([]byte, 0, n)
	plain = append(plain, sealedVersion, 0)
	if s.elicitURL {
		plain[1] = 1
	}
	plain = binary.BigEndian.AppendUint64(plain, uint64(created.Unix()))
	for _, f := range fields {
		plain = binary.AppendUvarint(plain, uint64(len(f)))
		plain = append(plain, f...)
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(k.aead.Seal(nonce, nonce, plain, []byte(sealedAD))), true
}

// open returns the session sealed in id and when it was created; false
// for anything else (not sealed with this key, altered, malformed).
func (k *sessionSealer) open(id string) (*session, time.Time, bool) {
	if len(id) > maxSealedID {
		return nil, time.Time{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, time.Time{}, false
	}
	ns := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, raw[:ns], raw[ns:], []byte(sealedAD))
	if err != nil || len(plain) < 10 || plain[0] != sealedVersion || plain[1] > 1 {
		return nil, time.Time{}, false
	}
	s := &session{id: id, elicitURL: plain[1] == 1}
	created := time.Unix(int64(binary.BigEndian.Uint64(plain[2:10])), 0)
	rest := plain[10:]
	for _, f := range [...]*string{&s.upstream, &s.subject, &s.actor, &s.conn} {
		l, w := binary.Uvarint(rest)
		if w <= 0 || l > maxSealedField || uint64(len(rest)-w) < l {
			return nil, time.Time{}, false
		}
		*f, rest = string(rest[w:w+int(l)]), rest[w+int(l):]
	}
	if len(rest) != 0 || s.upstream == "" {
		return nil, time.Time{}, false
	}
	return s, created, true
}
