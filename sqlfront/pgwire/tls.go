package pgwire

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/mandatehq/mandate/catalog/privfile"
)

// Names of the generated certificate files in the data directory.
const (
	GeneratedCertFile = "server.crt"
	GeneratedKeyFile  = "server.key"
)

// LoadOrCreateTLS returns a server TLS configuration. With certFile and
// keyFile it loads that key pair. Otherwise it loads dataDir/server.crt and
// dataDir/server.key, generating them first if neither exists: a
// self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1,
// valid for 10 years, written with mode 0600.
func LoadOrCreateTLS(certFile, keyFile, dataDir string) (*tls.Config, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("pgwire: both a TLS certificate and a key file are needed")
		}
		return loadKeyPair(certFile, keyFile)
	}
	if dataDir == "" {
		return nil, errors.New("pgwire: no TLS certificate files and no data directory")
	}
	certPath := filepath.Join(dataDir, GeneratedCertFile)
	keyPath := filepath.Join(dataDir, GeneratedKeyFile)
	certExists, err := fileExists(certPath)
	if err != nil {
		return nil, err
	}
	keyExists, err := fileExists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case certExists && keyExists:
		return loadKeyPair(certPath, keyPath)
	case certExists || keyExists:
		return nil, fmt.Errorf("pgwire: only one of %s and %s exists", certPath, keyPath)
	}
	certPEM, keyPEM, err := selfSignedCertificate(time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("pgwire: %w", err)
	}
	// The key is written first: a crash in between leaves only a key,
	// which the next start reports instead of silently regenerating.
	if err := writeFileAtomic(keyPath, keyPEM); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, certPEM); err != nil {
		return nil, err
	}
	return loadKeyPair(certPath, keyPath)
}

func loadKeyPair(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pgwire: loading TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("pgwire: %w", err)
	}
}

// selfSignedCertificate returns PEM encoded certificate and PKCS #8 key.
func selfSignedCertificate(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pgwire: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("pgwire: generating serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"Mandate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgwire: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pgwire: encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// writeFileAtomic writes data to path with mode 0600 (catalog/privfile).
func writeFileAtomic(path string, data []byte) error {
	if err := privfile.Write(path, data); err != nil {
		return fmt.Errorf("pgwire: %w", err)
	}
	return nil
}
