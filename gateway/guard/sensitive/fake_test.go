package sensitive

import (
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard/internal/keccak"
)

// Fake but valid values (checksums right) for tests and the corpus
// generator. Everything is derived from a seeded generator: deterministic.

type faker struct{ r *rand.Rand }

func newFaker(seed uint64) *faker {
	return &faker{rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (f *faker) digits(n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteByte(byte('0' + f.r.IntN(10)))
	}
	return sb.String()
}

func luhnDigit(s string) byte {
	// check digit for s (which excludes it)
	sum, dbl := 0, true
	for k := len(s) - 1; k >= 0; k-- {
		d := int(s[k] - '0')
		if dbl {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		dbl = !dbl
	}
	return byte('0' + (10-sum%10)%10)
}

// card returns a valid card number for a brand: visa, mc, amex, discover, jcb, diners, unionpay.
func (f *faker) card(brand string) string {
	var prefix string
	n := 16
	switch brand {
	case "visa":
		prefix = "4"
	case "mc":
		prefix = fmt.Sprint(51 + f.r.IntN(5))
	case "mc2":
		prefix = fmt.Sprint(2221 + f.r.IntN(500))
	case "amex":
		prefix = []string{"34", "37"}[f.r.IntN(2)]
		n = 15
	case "discover":
		prefix = "6011"
	case "jcb":
		prefix = fmt.Sprint(3528 + f.r.IntN(60))
	case "diners":
		prefix = "36"
		n = 14
	case "unionpay":
		prefix = "62"
		n = 16 + f.r.IntN(4)
	}
	body := prefix + f.digits(n-1-len(prefix))
	return body + string(luhnDigit(body))
}

// badLuhn returns s with its check digit changed.
func badLuhn(s string) string {
	last := s[len(s)-1]
	return s[:len(s)-1] + string('0'+(last-'0'+1)%10)
}

func group(s string, sizes []int, sep string) string {
	var parts []string
	for _, n := range sizes {
		if n >= len(s) {
			parts = append(parts, s)
			s = ""
			break
		}
		parts = append(parts, s[:n])
		s = s[n:]
	}
	if s != "" {
		parts = append(parts, s)
	}
	return strings.Join(parts, sep)
}

func group4(s, sep string) string {
	var parts []string
	for len(s) > 4 {
		parts = append(parts, s[:4])
		s = s[4:]
	}
	return strings.Join(append(parts, s), sep)
}

// iban returns a valid IBAN for country cc (BBAN digits, except GB/NL/IE/... with a bank code).
func (f *faker) iban(cc string) string {
	n := IBANLength(cc)
	var bban string
	switch cc {
	case "GB", "IE":
		bban = f.letters(4) + f.digits(n-8)
	case "NL":
		bban = f.letters(4) + f.digits(n-8)
	default:
		bban = f.digits(n - 4)
	}
	// check digits: 98 - mod97(bban + cc + "00")
	rem := 0
	for _, c := range bban + cc + "00" {
		if c >= 'A' && c <= 'Z' {
			rem = (rem*100 + int(c-'A'+10)) % 97
		} else {
			rem = (rem*10 + int(c-'0')) % 97
		}
	}
	return fmt.Sprintf("%s%02d%s", cc, 98-rem, bban)
}

func (f *faker) letters(n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteByte(byte('A' + f.r.IntN(26)))
	}
	return sb.String()
}

func (f *faker) alnum(n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteByte(base62[f.r.IntN(62)])
	}
	return sb.String()
}

func (f *faker) fromSet(set string, n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteByte(set[f.r.IntN(len(set))])
	}
	return sb.String()
}

func (f *faker) ssn() string {
	for {
		a := 1 + f.r.IntN(899)
		if a == 666 {
			continue
		}
		return fmt.Sprintf("%03d-%02d-%04d", a, 1+f.r.IntN(99), 1+f.r.IntN(9999))
	}
}

// githubToken returns a token with a valid CRC32 checksum.
func (f *faker) githubToken(prefix string) string {
	random := f.alnum(30)
	v := crc32.ChecksumIEEE([]byte(random))
	var cs [6]byte
	for k := 5; k >= 0; k-- {
		cs[k] = base62[v%62]
		v /= 62
	}
	return prefix + random + string(cs[:])
}

const b58alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

func base58Encode(b []byte) string {
	x := make([]byte, len(b))
	copy(x, b)
	var out []byte
	for {
		allZero := true
		rem := 0
		for i := range x {
			cur := rem*256 + int(x[i])
			x[i] = byte(cur / 58)
			rem = cur % 58
			if x[i] != 0 {
				allZero = false
			}
		}
		out = append(out, b58alphabet[rem])
		if allZero {
			break
		}
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, '1')
	}
	// reverse, and drop a spurious leading '1' from the last zero division
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func (f *faker) btcBase58(version byte) string {
	payload := make([]byte, 21, 25)
	payload[0] = version
	for i := 1; i < 21; i++ {
		payload[i] = byte(f.r.IntN(256))
	}
	h1 := sha256.Sum256(payload)
	h2 := sha256.Sum256(h1[:])
	s := base58Encode(append(payload, h2[:4]...))
	// base58Encode's loop emits one digit too many for a leading-zero
	// number: normalise by decoding check in the tests instead
	return s
}

func bech32Checksum(hrp string, data []byte, spec uint32) []byte {
	var values []byte
	for _, c := range []byte(hrp) {
		values = append(values, c>>5)
	}
	values = append(values, 0)
	for _, c := range []byte(hrp) {
		values = append(values, c&31)
	}
	values = append(values, data...)
	values = append(values, 0, 0, 0, 0, 0, 0)
	chk := uint32(1)
	for _, v := range values {
		chk = polymod(chk, v)
	}
	chk ^= spec
	out := make([]byte, 6)
	for i := range out {
		out[i] = byte(chk>>(5*(5-i))) & 31
	}
	return out
}

func (f *faker) btcBech32(taproot bool) string {
	const charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
	n, ver, spec := 20, byte(0), uint32(1)
	if taproot {
		n, ver, spec = 32, 1, 0x2bc830a3
	}
	prog := make([]byte, n)
	for i := range prog {
		prog[i] = byte(f.r.IntN(256))
	}
	// 8-bit to 5-bit groups
	data := []byte{ver}
	acc, bits := 0, 0
	for _, b := range prog {
		acc = acc<<8 | int(b)
		bits += 8
		for bits >= 5 {
			bits -= 5
			data = append(data, byte(acc>>bits)&31)
		}
	}
	if bits > 0 {
		data = append(data, byte(acc<<(5-bits))&31)
	}
	data = append(data, bech32Checksum("bc", data, spec)...)
	var sb strings.Builder
	sb.WriteString("bc1")
	for _, d := range data {
		sb.WriteByte(charset[d])
	}
	return sb.String()
}

func (f *faker) eth(checksummed bool) string {
	a := f.fromSet("0123456789abcdef", 40)
	if !checksummed {
		return "0x" + a
	}
	h := keccak.Sum256([]byte(a))
	out := []byte(a)
	for k := range out {
		nib := h[k/2] >> 4
		if k%2 == 1 {
			nib = h[k/2] & 0xf
		}
		if out[k] >= 'a' && nib >= 8 {
			out[k] -= 32
		}
	}
	return "0x" + string(out)
}
