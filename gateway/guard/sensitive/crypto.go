package sensitive

import (
	"crypto/sha256"

	"github.com/mandatehq/mandate/gateway/guard/internal/keccak"
)

// CRYPTO validators: Bitcoin base58check (P2PKH '1…', P2SH '3…') and
// bech32/bech32m ("bc1…"), Ethereum addresses with the EIP-55 checksum
// when mixed case.

var b58val [256]int8

func init() {
	for i := range b58val {
		b58val[i] = -1
	}
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	for i := 0; i < len(alphabet); i++ {
		b58val[alphabet[i]] = int8(i)
	}
}

// base58Addr validates b[s:e] as a base58check Bitcoin address: 25 bytes,
// version 0x00 or 0x05, and the first four bytes of the double SHA-256.
func base58Addr(b []byte, s, e int) (Finding, bool) {
	if e-s < 26 || e-s > 35 || !bndEnd(b, e) {
		return Finding{}, false
	}
	var num [25]byte
	for k := s; k < e; k++ {
		v := int(b58val[b[k]])
		if v < 0 {
			return Finding{}, false
		}
		carry := v
		for x := len(num) - 1; x >= 0; x-- {
			carry += int(num[x]) * 58
			num[x] = byte(carry)
			carry >>= 8
		}
		if carry != 0 {
			return Finding{}, false
		}
	}
	// leading '1's encode leading zero bytes
	ones := 0
	for k := s; k < e && b[k] == '1'; k++ {
		ones++
	}
	zeros := 0
	for zeros < len(num) && num[zeros] == 0 {
		zeros++
	}
	if ones != zeros || (num[0] != 0x00 && num[0] != 0x05) {
		return Finding{}, false
	}
	h1 := sha256.Sum256(num[:21])
	h2 := sha256.Sum256(h1[:])
	if h2[0] != num[21] || h2[1] != num[22] || h2[2] != num[23] || h2[3] != num[24] {
		return Finding{}, false
	}
	return Finding{Entity: Crypto, Rule: "btc_base58", Start: s, End: e}, true
}

var bech32val [256]int8

func init() {
	for i := range bech32val {
		bech32val[i] = -1
	}
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	for i := 0; i < len(charset); i++ {
		bech32val[charset[i]] = int8(i)
		bech32val[charset[i]-32*btoB(charset[i] >= 'a')] = int8(i)
	}
}

func btoB(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func polymod(v uint32, d byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	top := v >> 25
	v = (v&0x1ffffff)<<5 ^ uint32(d)
	for i := 0; i < 5; i++ {
		if (top>>i)&1 == 1 {
			v ^= gen[i]
		}
	}
	return v
}

// bech32Addr validates a segwit address "bc1…" at s: one case, the
// bech32 (witness v0) or bech32m (v1+) checksum, and the program length.
func bech32Addr(b []byte, s int) (Finding, bool) {
	e := runOf(b, s+3, cAlnum, 88)
	n := e - s
	if n != 42 && n != 62 || !bndEnd(b, e) {
		return Finding{}, false
	}
	upper := b[s] == 'B'
	chk := uint32(1)
	// hrp expansion of "bc"
	for _, c := range []byte("bc") {
		chk = polymod(chk, c>>5)
	}
	chk = polymod(chk, 0)
	for _, c := range []byte("bc") {
		chk = polymod(chk, c&31)
	}
	for k := s + 3; k < e; k++ {
		c := b[k]
		if (c >= 'a' && c <= 'z') == upper && !isDigit(c) {
			return Finding{}, false // mixed case
		}
		v := bech32val[c]
		if v < 0 {
			return Finding{}, false
		}
		chk = polymod(chk, byte(v))
	}
	ver := bech32val[b[s+3]]
	switch {
	case ver == 0 && chk == 1: // bech32, P2WPKH (42) or P2WSH (62)
	case ver == 1 && n == 62 && chk == 0x2bc830a3: // bech32m, P2TR
	default:
		return Finding{}, false
	}
	return Finding{Entity: Crypto, Rule: "btc_bech32", Start: s, End: e}, true
}

// ethAddr validates 0x + 40 hex digits at s; mixed case must carry a
// valid EIP-55 checksum.
func ethAddr(b []byte, s int) (Finding, bool) {
	e := s + 42
	if e > len(b) || !bndEnd(b, e) {
		return Finding{}, false
	}
	hasUpper, hasLower := false, false
	for k := s + 2; k < e; k++ {
		c := b[k]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f':
			hasLower = true
		case c >= 'A' && c <= 'F':
			hasUpper = true
		default:
			return Finding{}, false
		}
	}
	if !(hasUpper && hasLower) {
		return Finding{Entity: Crypto, Rule: "eth", Start: s, End: e}, true
	}
	var low [40]byte
	for k := 0; k < 40; k++ {
		low[k] = lower(b[s+2+k])
	}
	h := keccak.Sum256(low[:])
	for k := 0; k < 40; k++ {
		c := b[s+2+k]
		if isDigit(c) {
			continue
		}
		nib := h[k/2] >> 4
		if k%2 == 1 {
			nib = h[k/2] & 0xf
		}
		if (nib >= 8) != isUpper(c) {
			return Finding{}, false
		}
	}
	return Finding{Entity: Crypto, Rule: "eth_eip55", Start: s, End: e}, true
}
