package sensitive

import (
	"sort"
	"strings"
)

// The built-in entity types (the names of the entities option).
const (
	Email      = "EMAIL"
	Phone      = "PHONE"
	CreditCard = "CREDIT_CARD"
	IBAN       = "IBAN"
	USSSN      = "US_SSN"
	IPAddress  = "IP_ADDRESS"
	MACAddress = "MAC_ADDRESS"
	Crypto     = "CRYPTO"
	URL        = "URL"
	Secret     = "SECRET"
)

type kind uint16

const (
	kEmail kind = 1 << iota
	kPhone
	kCard
	kIBAN
	kSSN
	kIP
	kMAC
	kCrypto
	kURL
	kSecret
	kAll = kEmail | kPhone | kCard | kIBAN | kSSN | kIP | kMAC | kCrypto | kURL | kSecret
)

var builtinNames = []struct {
	name string
	k    kind
}{
	{Email, kEmail}, {Phone, kPhone}, {CreditCard, kCard}, {IBAN, kIBAN}, {USSSN, kSSN},
	{IPAddress, kIP}, {MACAddress, kMAC}, {Crypto, kCrypto}, {URL, kURL}, {Secret, kSecret},
}

// Builtins returns the built-in entity type names.
func Builtins() []string {
	out := make([]string, len(builtinNames))
	for i, b := range builtinNames {
		out[i] = b.name
	}
	return out
}

func builtinKind(name string) (kind, bool) {
	for _, b := range builtinNames {
		if b.name == name {
			return b.k, true
		}
	}
	return 0, false
}

// Finding is one detected entity. It never holds the matched text: Start
// and End are a byte range of the scanned content (of the raw document for
// JSON), Entity and Rule are constants safe to log.
type Finding struct {
	Entity string // EMAIL, CREDIT_CARD, ..., or a custom entity's name
	Rule   string // which detector matched (luhn, iban, github_classic, jwt, custom, word, ...)
	Start  int
	End    int
}

// Checksummed reports whether the finding was confirmed by a checksum or
// a structural check (Luhn, mod 97, base58check, bech32, EIP-55, GitHub's
// CRC32, a JWT's JSON header, a PEM armour), rather than by shape alone.
func (f Finding) Checksummed() bool {
	switch f.Rule {
	case "luhn", "iban", "ssn", "btc_base58", "btc_bech32", "eth_eip55", "github_classic", "npm", "jwt", "pem_private_key":
		return true
	}
	return false
}

// EntityCount is one line of a summary: how many findings of one type.
type EntityCount struct {
	Entity string `json:"entity"`
	Count  int    `json:"count"`
}

// Summarize counts findings per entity type, sorted by name: what the
// audit record holds (never the matched text).
func Summarize(fs []Finding) []EntityCount {
	if len(fs) == 0 {
		return nil
	}
	var out []EntityCount
	for _, f := range fs {
		found := false
		for i := range out {
			if out[i].Entity == f.Entity {
				out[i].Count++
				found = true
				break
			}
		}
		if !found {
			out = append(out, EntityCount{Entity: f.Entity, Count: 1})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Entity < out[j].Entity })
	return out
}

func validEntityName(s string) bool {
	if s == "" || len(s) > 40 || !(s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return !strings.HasSuffix(s, "_")
}
