package sensitive

import (
	"fmt"
	"testing"
)

func allDetector(t testing.TB) *Detector {
	t.Helper()
	d, err := NewDetector(nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// found renders findings as "ENTITY:text" for comparison.
func found(d *Detector, s string) []string {
	var out []string
	for _, f := range d.Find(nil, []byte(s)) {
		out = append(out, f.Entity+":"+s[f.Start:f.End])
	}
	return out
}

func TestDetectTable(t *testing.T) {
	f := newFaker(1)
	visa := f.card("visa")
	amex := f.card("amex")
	mc := f.card("mc")
	de := f.iban("DE")
	gb := f.iban("GB")
	gh := f.githubToken("ghp_")
	npm := f.githubToken("npm_")
	btc1 := f.btcBase58(0)
	btc3 := f.btcBase58(5)
	bech := f.btcBech32(false)
	tr := f.btcBech32(true)
	eth := f.eth(true)
	ethLow := f.eth(false)
	jwtTok := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	cases := []struct {
		in   string
		want []string
	}{
		{"mail alice.smith+tag@example.co.uk today", []string{"EMAIL:alice.smith+tag@example.co.uk"}},
		{"logo@2x.png and @types/node and foo@1.2.3 and user@localhost", nil},
		{"card " + visa + " exp 12/27", []string{"CREDIT_CARD:" + visa}},
		{"card " + group4(visa, " ") + " 2027", []string{"CREDIT_CARD:" + group4(visa, " ")}},
		{"amex " + group(amex, []int{4, 6, 5}, "-"), []string{"CREDIT_CARD:" + group(amex, []int{4, 6, 5}, "-")}},
		{"bad " + badLuhn(mc), nil},
		{"order 1234567890123456 shipped", nil},
		{"ssn 536-22-8371 ok", []string{"US_SSN:536-22-8371"}},
		{"ssn 000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000", nil},
		{"iban " + de + ".", []string{"IBAN:" + de}},
		{"iban " + group4(gb, " ") + " end", []string{"IBAN:" + group4(gb, " ")}},
		{"iban DE89370400440532013001", nil},
		{"host 192.168.10.254 port", []string{"IP_ADDRESS:192.168.10.254"}},
		{"version 1.2.3 and 10.0.19041.1 and 256.1.1.1", nil},
		{"v6 2001:db8:85a3::8a2e:370:7334 and fe80::1ff:fe23:4567:890a", []string{"IP_ADDRESS:2001:db8:85a3::8a2e:370:7334", "IP_ADDRESS:fe80::1ff:fe23:4567:890a"}},
		{"time 12:30:45 std::vector Foo::bar", nil},
		{"mac 00:1A:2B:3C:4D:5E and 00-1a-2b-3c-4d-5f and 0011.2233.4455", []string{"MAC_ADDRESS:00:1A:2B:3C:4D:5E", "MAC_ADDRESS:00-1a-2b-3c-4d-5f", "MAC_ADDRESS:0011.2233.4455"}},
		{"btc " + btc1 + " " + btc3, []string{"CRYPTO:" + btc1, "CRYPTO:" + btc3}},
		{"bech " + bech + " tr " + tr, []string{"CRYPTO:" + bech, "CRYPTO:" + tr}},
		{"eth " + eth + " low " + ethLow, []string{"CRYPTO:" + eth, "CRYPTO:" + ethLow}},
		{"eth bad " + flipFirstLetter(eth), nil},
		{"see https://docs.example.com/a/b?c=d#e.", []string{"URL:https://docs.example.com/a/b?c=d#e"}},
		{"(https://example.org/x_(y)) www.example.com/path", []string{"URL:https://example.org/x_(y)", "URL:www.example.com/path"}},
		{"db postgres://app:s3cr3t@db.internal.example:5432/app", []string{"SECRET:postgres://app:s3cr3t@db.internal.example:5432/app"}},
		{"token " + gh + " npm " + npm, []string{"SECRET:" + gh, "SECRET:" + npm}},
		{"fake ghp_16C7e42F292c6912E7710c838347Ae178B4a", nil},
		{"aws AKIAIOSFODNN7EXAMPLE", []string{"SECRET:AKIAIOSFODNN7EXAMPLE"}},
		{"jwt " + jwtTok + " end", []string{"SECRET:" + jwtTok}},
		{"password=Xk9#mQ2$vL7pR4 next", []string{"SECRET:Xk9#mQ2$vL7pR4"}},
		{`{"api_key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}`, []string{"SECRET:9f8e7d6c5b4a39281706f5e4d3c2b1a0"}},
		{"password=changeme password: ${DB_PASSWORD} token=<your token>", nil},
		{"call +1 415-555-0132 or (212) 555-0147 or 646.555.0199", []string{"PHONE:+1 415-555-0132", "PHONE:(212) 555-0147", "PHONE:646.555.0199"}},
		{"+44 20 7946 0958 and +49 30 901820", []string{"PHONE:+44 20 7946 0958", "PHONE:+49 30 901820"}},
		{"+1 for this, tz +05:30, 2024-01-15, 123-456-7890", nil},
		{"uuid 550e8400-e29b-41d4-a716-446655440000 sha 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12", nil},
	}
	d := allDetector(t)
	for _, tc := range cases {
		got := found(d, tc.in)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q:\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func flipFirstLetter(s string) string {
	b := []byte(s)
	for i := 2; i < len(b); i++ {
		if b[i] >= 'a' && b[i] <= 'f' {
			b[i] -= 32
			return string(b)
		}
		if b[i] >= 'A' && b[i] <= 'F' {
			b[i] += 32
			return string(b)
		}
	}
	return s
}

// TestNoAllocWithoutFindings: scanning content without entities allocates
// nothing; with findings, nothing when dst has room.
func TestNoAllocWithoutFindings(t *testing.T) {
	d := allDetector(t)
	clean := benchCorpus(64 << 10)
	clean = clean[:0:0]
	clean = append(clean, []byte(benchProse[1]+" "+benchCode[0]+benchLog[1]+benchLog[2])...)
	if n := len(d.Find(nil, clean)); n != 0 {
		t.Fatalf("%d findings in clean text", n)
	}
	if a := testing.AllocsPerRun(50, func() { d.Find(nil, clean) }); a != 0 {
		t.Errorf("%.0f allocations without findings", a)
	}
	hits := []byte("mail bob@example.com, card 4111 1111 1111 1111, host 10.0.0.1")
	buf := make([]Finding, 0, 8)
	if a := testing.AllocsPerRun(50, func() { d.Find(buf[:0], hits) }); a != 0 {
		t.Errorf("%.0f allocations with room for the findings", a)
	}
}
