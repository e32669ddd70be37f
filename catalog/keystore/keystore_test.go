package keystore_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/keystore/keystoretest"
)

func TestDir(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Store { return keystore.Dir(t.TempDir()) })
}

func testKeyring(t *testing.T) *catalog.Keyring {
	kr, err := catalog.NewKeyring(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestSealedDir(t *testing.T) {
	keystoretest.Run(t, func(t *testing.T) keystore.Store {
		return keystore.Sealed(keystore.Dir(t.TempDir()), testKeyring(t))
	})
}

// The data directory holds exactly the bytes written, under the name: an
// existing installation's files are read as they are.
func TestDirFilesAreTodays(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "node-token"), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := keystore.Dir(dir)
	b, err := s.Get(t.Context(), "node-token")
	if err != nil || string(b.Data) != "tok\n" {
		t.Fatalf("Get = %q, %v", b.Data, err)
	}
	if _, err := s.CompareAndSwap(t.Context(), "node-token", b.Version, []byte("new\n")); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "node-token"))
	fi, _ := os.Stat(filepath.Join(dir, "node-token"))
	if string(raw) != "new\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file = %q mode %v", raw, fi.Mode().Perm())
	}
	if _, err := s.Get(t.Context(), "../escape"); err == nil {
		t.Fatal("a path outside the directory was accepted")
	}
}

// Sealed blobs are ciphertext in the inner store, bound to their name.
func TestSealedBindsName(t *testing.T) {
	dir := t.TempDir()
	inner := keystore.Dir(dir)
	s := keystore.Sealed(inner, testKeyring(t))
	if _, err := s.Create(t.Context(), "a", []byte("secret-value")); err != nil {
		t.Fatal(err)
	}
	raw, err := inner.Get(t.Context(), "a")
	if err != nil || bytes.Contains(raw.Data, []byte("secret-value")) {
		t.Fatalf("inner store holds %q, %v", raw.Data, err)
	}
	if _, err := inner.Create(t.Context(), "b", raw.Data); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(t.Context(), "b"); err == nil {
		t.Fatal("a sealed blob copied to another name opened")
	}
	other, _ := catalog.NewKeyring(bytes.Repeat([]byte{8}, 32))
	if _, err := keystore.Sealed(inner, other).Get(t.Context(), "a"); err == nil {
		t.Fatal("opened with another master key")
	}
}
