package keccak

import (
	"crypto/sha3"
	"encoding/hex"
	"strings"
	"testing"
)

func TestSum256(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
		{"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
	} {
		got := Sum256([]byte(tc.in))
		if h := hex.EncodeToString(got[:]); h != tc.want {
			t.Errorf("Sum256(%q) = %s, want %s", tc.in, h, tc.want)
		}
	}
}

// TestPermutation checks the sponge and permutation against the standard
// library's SHA3-256 (same permutation and rate, other padding) across
// block boundaries.
func TestPermutation(t *testing.T) {
	for _, n := range []int{0, 1, 135, 136, 137, 271, 272, 500} {
		in := []byte(strings.Repeat("x", n))
		if got, want := sum(in, 0x06), sha3.Sum256(in); got != want {
			t.Errorf("len %d: %x, want %x", n, got, want)
		}
	}
}
