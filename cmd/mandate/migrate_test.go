package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/gateway/oauthconnect"
)

// copyAudit copies every event once, in order, however the instants fall
// on the pages (an instant with more events than a page included).
func TestCopyAudit(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, batch := range []int{1, 2, 3, 5, 100} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) {
			src, dst := memstore.New(), memstore.New()
			var want []string
			n := 0
			for i, per := range []int{7, 2, 5, 1, 3} {
				for range per {
					id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
					n++
					want = append(want, id)
					e := catalog.AuditEvent{EventID: id, Time: t0.Add(time.Duration(i) * time.Second), Service: "mcp", Action: "tools/call",
						UserIdentity: "alice@example.com", Decision: "allow"}
					if err := src.AppendAudit(t.Context(), e); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Interrupted after each number of batches, then continued
			// from the position reached: every event once, in order.
			for stopAt := 1; ; stopAt++ {
				dst = memstore.New()
				applied := 0
				pos, err := copyAudit(t.Context(), src, batch, auditPos{}, func(ctx context.Context, evs []catalog.AuditEvent, _ auditPos) error {
					if applied++; applied == stopAt {
						return errStop
					}
					return dst.AppendAudit(ctx, evs...)
				})
				if err == nil {
					break
				}
				pos, err = copyAudit(t.Context(), src, batch, pos, func(ctx context.Context, evs []catalog.AuditEvent, _ auditPos) error {
					return dst.AppendAudit(ctx, evs...)
				})
				rows, _ := dst.ListAudit(t.Context(), time.Time{}, 0)
				if err != nil || int(pos.Copied) != len(want) || len(rows) != len(want) {
					t.Fatalf("stopped at batch %d, continued: %d copied, %d rows, %v; want %d", stopAt, pos.Copied, len(rows), err, len(want))
				}
				for i, r := range rows {
					if r.EventID != want[i] {
						t.Fatalf("stopped at batch %d: row %d = %s, want %s", stopAt, i, r.EventID, want[i])
					}
				}
			}
			dst = memstore.New()
			pos, err := copyAudit(t.Context(), src, batch, auditPos{}, func(ctx context.Context, evs []catalog.AuditEvent, _ auditPos) error {
				return dst.AppendAudit(ctx, evs...)
			})
			got := int(pos.Copied)
			if err != nil || got != len(want) {
				t.Fatalf("copyAudit = %d, %v; want %d", got, err, len(want))
			}
			rows, err := dst.ListAudit(t.Context(), time.Time{}, 0)
			if err != nil || len(rows) != len(want) {
				t.Fatalf("target holds %d, %v", len(rows), err)
			}
			for i, r := range rows {
				if r.EventID != want[i] {
					t.Fatalf("row %d = %s, want %s", i, r.EventID, want[i])
				}
			}
		})
	}
}

// copyKeys copies the key files and every per-user grant; a target that
// holds a different key is refused.
func TestCopyKeys(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"upstream-signing-keys.json": `{"version":1,"sealed":"x"}`, "node-token": "0123456789abcdef0123\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file, err := oauthconnect.NewFileTokenStore(filepath.Join(dir, userTokensFile))
	if err != nil {
		t.Fatal(err)
	}
	grant := &oauthconnect.StoredToken{User: "alice@example.com", Connection: "system.ai.gh", AccessToken: []byte("sealed-access"),
		RefreshToken: []byte("sealed-refresh"), Resource: "https://mcp.example/", TokenEndpoint: "https://as.example/token", ClientID: "c"}
	if err := file.Put(t.Context(), grant); err != nil {
		t.Fatal(err)
	}
	target := keystore.Dir(t.TempDir())
	names, grants, err := copyKeys(t.Context(), dir, target)
	if err != nil || len(names) != 2 || grants != 1 {
		t.Fatalf("copyKeys = %v, %d, %v", names, grants, err)
	}
	got, err := oauthconnect.NewSharedTokenStore(target).Get(t.Context(), "alice@example.com", "system.ai.gh")
	if err != nil || string(got.RefreshToken) != "sealed-refresh" || got.TokenEndpoint != grant.TokenEndpoint {
		t.Fatalf("grant in the target = %+v, %v", got, err)
	}
	if b, err := target.Get(t.Context(), "node-token"); err != nil || string(b.Data) != "0123456789abcdef0123\n" {
		t.Fatalf("node token in the target = %q, %v", b.Data, err)
	}
	other := keystore.Dir(t.TempDir())
	if _, err := other.Create(t.Context(), "node-token", []byte("another-token-0123456789\n")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := copyKeys(t.Context(), dir, other); err == nil || !strings.Contains(err.Error(), "different node-token") {
		t.Fatalf("copy over a different key: %v", err)
	}
}

// A replica's grants from before the shared store move into it once; a
// grant the store holds already is kept.
func TestAdoptGrants(t *testing.T) {
	dir := t.TempDir()
	file, err := oauthconnect.NewFileTokenStore(filepath.Join(dir, userTokensFile))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(user, access string) *oauthconnect.StoredToken {
		return &oauthconnect.StoredToken{User: user, Connection: "system.ai.gh", AccessToken: []byte(access)}
	}
	for _, g := range []*oauthconnect.StoredToken{mk("alice@example.com", "alice-old"), mk("bob@example.com", "bob-local")} {
		if err := file.Put(t.Context(), g); err != nil {
			t.Fatal(err)
		}
	}
	shared := oauthconnect.NewSharedTokenStore(keystore.Dir(t.TempDir()))
	if err := shared.Put(t.Context(), mk("alice@example.com", "alice-newer")); err != nil {
		t.Fatal(err)
	}
	n, err := adoptGrants(t.Context(), dir, shared)
	if err != nil || n != 1 {
		t.Fatalf("adoptGrants = %d, %v; want bob's grant only", n, err)
	}
	for user, want := range map[string]string{"alice@example.com": "alice-newer", "bob@example.com": "bob-local"} {
		if g, err := shared.Get(t.Context(), user, "system.ai.gh"); err != nil || string(g.AccessToken) != want {
			t.Fatalf("%s's grant = %+v, %v; want %s", user, g, err, want)
		}
	}
	// Once moved, a grant disconnected in the store does not come back.
	if err := shared.Delete(t.Context(), "bob@example.com", "system.ai.gh"); err != nil {
		t.Fatal(err)
	}
	if n, err := adoptGrants(t.Context(), dir, shared); err != nil || n != 0 {
		t.Fatalf("second adoptGrants = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, userTokensFile+adoptedSuffix)); err != nil {
		t.Fatal(err)
	}
}

// copyGatewayKeys copies DATA_DIR/keys blob for blob: the target's sealed
// view opens them with the same master key; sign-ins in progress stay
// behind; a root key file of older installations is skipped for it.
func TestCopyGatewayKeys(t *testing.T) {
	dir := t.TempDir()
	kr, err := catalog.NewKeyring(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	src := keystore.Sealed(keystore.Dir(filepath.Join(dir, gatewayKeysDir)), kr)
	grant := &oauthconnect.StoredToken{User: "alice@example.com", Connection: "system.ai.gh", AccessToken: []byte("sealed-access")}
	if err := oauthconnect.NewSharedTokenStore(src).Put(t.Context(), grant); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"upstream-signing-keys.json": `{"version":1,"sealed":"new"}`, "oauth-flow:abc": `{}`} {
		if _, err := src.Create(t.Context(), name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "upstream-signing-keys.json"), []byte(`{"version":1,"sealed":"old"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	raw := keystore.Dir(t.TempDir())
	names, grants, err := copyGatewayKeys(t.Context(), dir, raw)
	if err != nil || fmt.Sprint(names) != "[upstream-signing-keys.json]" || grants != 1 {
		t.Fatalf("copyGatewayKeys = %v, %d, %v", names, grants, err)
	}
	target := keystore.Sealed(raw, kr)
	if b, err := target.Get(t.Context(), "upstream-signing-keys.json"); err != nil || string(b.Data) != `{"version":1,"sealed":"new"}` {
		t.Fatalf("signing keys in the target = %q, %v", b.Data, err)
	}
	if g, err := oauthconnect.NewSharedTokenStore(target).Get(t.Context(), "alice@example.com", "system.ai.gh"); err != nil || string(g.AccessToken) != "sealed-access" {
		t.Fatalf("grant in the target = %+v, %v", g, err)
	}
	if _, err := raw.Get(t.Context(), "oauth-flow:abc"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a sign-in in progress was copied: %v", err)
	}
	if names, _, err := copyKeys(t.Context(), dir, target, names...); err != nil || len(names) != 0 {
		t.Fatalf("copyKeys after it = %v, %v", names, err)
	}
}
