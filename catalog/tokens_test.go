package catalog_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

// TestAccessTokenSum: the cache key is the token's SHA-256, whose hex is
// the hash the catalog stores, for a token of any length.
func TestAccessTokenSum(t *testing.T) {
	token, hash, err := catalog.NewAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{token, "", "mnd_x", token + "x", strings.Repeat("a", 1000)} {
		sum := catalog.AccessTokenSum(tok)
		want := sha256.Sum256([]byte(tok))
		if sum != want || catalog.HashAccessToken(tok) != hex.EncodeToString(want[:]) {
			t.Errorf("%q: sum %x, hash %s", tok, sum, catalog.HashAccessToken(tok))
		}
	}
	if got := catalog.AccessTokenSum(token); hex.EncodeToString(got[:]) != hash {
		t.Errorf("the new token's sum %x, its hash %s", got, hash)
	}
	if n := testing.AllocsPerRun(10, func() { catalog.AccessTokenSum(token) }); n != 0 {
		t.Errorf("allocations per sum: %v", n)
	}
}
