package api_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/enforce/api"

	"github.com/mandatehq/mandate/catalog/keystore"
)

func TestLoadOrCreateToken(t *testing.T) {
	hex64 := regexp.MustCompile(`^[0-9a-f]{64}$`)
	t.Run("created at first start, 0600, then stable", func(t *testing.T) {
		t.Setenv(api.TokenEnv, "")
		dir := t.TempDir()
		tok, err := api.LoadOrCreateToken(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !hex64.MatchString(tok) {
			t.Fatalf("token %q is not 32 bytes in hex", tok)
		}
		fi, err := os.Stat(filepath.Join(dir, api.TokenFile))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
		}
		again, err := api.LoadOrCreateToken(dir)
		if err != nil || again != tok {
			t.Fatalf("second start: %q, %v; want %q", again, err, tok)
		}
		left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
		if len(left) > 0 {
			t.Fatalf("temporary files left behind: %v", left)
		}
	})
	t.Run("concurrent first starts agree", func(t *testing.T) {
		t.Setenv(api.TokenEnv, "")
		dir := t.TempDir()
		toks := make([]string, 8)
		errs := make([]error, 8)
		var wg sync.WaitGroup
		for i := range toks {
			wg.Go(func() { toks[i], errs[i] = api.LoadOrCreateToken(dir) })
		}
		wg.Wait()
		for i := range toks {
			if errs[i] != nil || toks[i] != toks[0] {
				t.Fatalf("start %d: %q, %v; start 0: %q", i, toks[i], errs[i], toks[0])
			}
		}
	})
	t.Run("the environment wins", func(t *testing.T) {
		t.Setenv(api.TokenEnv, "  from-the-environment-123  ")
		dir := t.TempDir()
		tok, err := api.LoadOrCreateToken(dir)
		if err != nil || tok != "from-the-environment-123" {
			t.Fatalf("%q, %v", tok, err)
		}
		if _, err := os.Stat(filepath.Join(dir, api.TokenFile)); !os.IsNotExist(err) {
			t.Fatalf("a token file was written although the environment sets one: %v", err)
		}
	})
	bad := []struct {
		name, env, file string
		mode            os.FileMode
		want            string
	}{
		{"short environment token", "short", "", 0, "at least 16 characters"},
		{"file readable by others", "", strings.Repeat("a", 64), 0o644, "may be read by others"},
		{"empty file", "", "\n", 0o600, "fewer than 16 characters"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(api.TokenEnv, c.env)
			dir := t.TempDir()
			if c.file != "" {
				p := filepath.Join(dir, api.TokenFile)
				if err := os.WriteFile(p, []byte(c.file), c.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, c.mode); err != nil {
					t.Fatal(err)
				}
			}
			tok, err := api.LoadOrCreateToken(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%q, %v; want an error saying %q", tok, err, c.want)
			}
		})
	}
}

// Replicas sharing a key store get one node token, written to each data
// directory; MANDATE_NODE_TOKEN still wins.
func TestLoadOrCreateSharedToken(t *testing.T) {
	t.Setenv(api.TokenEnv, "")
	keys := keystore.Dir(t.TempDir())
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := api.LoadOrCreateSharedToken(t.Context(), dirA, keys)
	if err != nil || len(a) < api.MinTokenLength {
		t.Fatalf("token %q, %v", a, err)
	}
	b, err := api.LoadOrCreateSharedToken(t.Context(), dirB, keys)
	if err != nil || b != a {
		t.Fatalf("second replica's token %q, %v; want %q", b, err, a)
	}
	if f, err := api.LoadOrCreateToken(dirB); err != nil || f != a {
		t.Fatalf("DATA_DIR/node-token = %q, %v", f, err)
	}
	t.Setenv(api.TokenEnv, "from-the-environment-0123456789")
	if c, err := api.LoadOrCreateSharedToken(t.Context(), dirA, keys); err != nil || c != "from-the-environment-0123456789" {
		t.Fatalf("with %s: %q, %v", api.TokenEnv, c, err)
	}
}
