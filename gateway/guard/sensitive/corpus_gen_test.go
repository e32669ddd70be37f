package sensitive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// The generated part of the labelled corpus (testdata/guardrails/
// sensitive.jsonl): templates written for this project, filled with fake
// values from a seeded generator (valid checksums where the type has one)
// and hard negatives. Labels come from the slots, never from the detector.
// Regenerate with
//
//	go test ./gateway/guard/sensitive -run TestCorpusIsGenerated -update

type corpusLabel struct {
	Type  string `json:"type"`
	Value string `json:"value"`
	Start int    `json:"start"`
	End   int    `json:"end"`
	// Checksummed marks SECRET values whose format carries a checksum or
	// a structure the detector verifies (GitHub/npm CRC32, JWT, PEM).
	Checksummed bool `json:"checksummed,omitempty"`
}

type corpusItem struct {
	ID       string        `json:"id"`
	Kind     string        `json:"kind"`
	Text     string        `json:"text"`
	Entities []corpusLabel `json:"entities"`
}

var firstNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe", "liam", "noah", "emma", "mia", "lucas", "sofia", "mateo", "chloe", "aarav", "wei", "yuki", "fatima", "omar", "ingrid", "pierre"}
var lastNames = []string{"smith", "johnson", "garcia", "müller", "nguyen", "kowalski", "rossi", "dubois", "tanaka", "okafor", "silva", "larsen", "novak", "haddad", "kim", "patel", "oconnor", "schmidt", "moreau", "jensen"}
var mailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com", "eu.example.org", "contoso.example", "northwind.example", "fabrikam.test", "corp.acme.example", "students.uni.example.edu"}

// gen fills one template.
type gen struct {
	f    *faker
	text strings.Builder
	labs []corpusLabel
	json bool // inside a JSON template: values are JSON-escaped
	chk  bool // the next SECRET is checksummed
}

func (g *gen) pick(xs []string) string { return xs[g.f.r.IntN(len(xs))] }

func (g *gen) add(typ, v string) {
	if g.json {
		q := jsonwalk.AppendString(nil, []byte(v))
		v = string(q[1 : len(q)-1])
	}
	s := g.text.Len()
	g.text.WriteString(v)
	if typ != "" {
		g.labs = append(g.labs, corpusLabel{Type: typ, Value: v, Start: s, End: g.text.Len(), Checksummed: typ == Secret && g.chk})
	}
}

func asciiName(s string) string {
	return strings.NewReplacer("ü", "ue", "ö", "oe", "ä", "ae").Replace(s)
}

func (g *gen) email() string {
	fn, ln := g.pick(firstNames), asciiName(g.pick(lastNames))
	d := g.pick(mailDomains)
	switch g.f.r.IntN(6) {
	case 0:
		return fn + "." + ln + "@" + d
	case 1:
		return fn + "_" + ln + fmt.Sprint(g.f.r.IntN(99)) + "@" + d
	case 2:
		return fn[:1] + ln + "+" + g.pick([]string{"billing", "news", "github", "test"}) + "@" + d
	case 3:
		return strings.ToUpper(fn[:1]) + fn[1:] + "." + strings.ToUpper(ln[:1]) + ln[1:] + "@" + d
	case 4:
		return g.pick([]string{"support", "security", "noreply", "hr-team", "billing", "oncall"}) + "@" + d
	default:
		return fn + ln + "@" + d
	}
}

func (g *gen) phone() string {
	r := g.f.r
	n4 := fmt.Sprintf("01%02d", r.IntN(100))
	area := []string{"415", "212", "646", "312", "206", "617", "303", "512", "702", "808"}[r.IntN(10)]
	switch r.IntN(9) {
	case 0:
		return "+1 " + area + "-555-" + n4
	case 1:
		return "(" + area + ") 555-" + n4
	case 2:
		return area + ".555." + n4
	case 3:
		return area + "-555-" + n4
	case 4:
		return fmt.Sprintf("+44 20 7946 0%03d", r.IntN(1000))
	case 5:
		return fmt.Sprintf("+49 30 %d", 900000+r.IntN(99999))
	case 6:
		return fmt.Sprintf("+33 1 %02d %02d %02d %02d", r.IntN(100), r.IntN(100), r.IntN(100), r.IntN(100))
	case 7:
		return fmt.Sprintf("+91 98%03d %05d", r.IntN(1000), r.IntN(100000))
	default:
		return "1-800-555-" + n4
	}
}

func (g *gen) cardValue() string {
	c := g.f.card(g.pick([]string{"visa", "visa", "mc", "mc2", "amex", "discover", "jcb", "diners", "unionpay"}))
	switch g.f.r.IntN(3) {
	case 0:
		return c
	case 1:
		if len(c) == 15 {
			return group(c, []int{4, 6, 5}, " ")
		}
		if len(c) == 14 {
			return group(c, []int{4, 6, 4}, " ")
		}
		return group4(c, " ")
	default:
		if len(c) == 15 {
			return group(c, []int{4, 6, 5}, "-")
		}
		return group4(c, "-")
	}
}

func (g *gen) ibanValue() string {
	v := g.f.iban(g.pick([]string{"DE", "FR", "GB", "ES", "IT", "NL", "BE", "CH", "AT", "PL", "SE", "NO", "IE", "PT", "DK", "FI"}))
	if g.f.r.IntN(2) == 0 {
		return group4(v, " ")
	}
	return v
}

func (g *gen) ssnValue() string {
	s := g.f.ssn()
	if g.f.r.IntN(5) == 0 {
		return strings.ReplaceAll(s, "-", " ")
	}
	return s
}

func (g *gen) ip() string {
	r := g.f.r
	switch r.IntN(7) {
	case 0:
		return fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254))
	case 1:
		return fmt.Sprintf("192.168.%d.%d", r.IntN(256), 1+r.IntN(254))
	case 2:
		return fmt.Sprintf("203.0.113.%d", 1+r.IntN(254))
	case 3:
		return fmt.Sprintf("198.51.100.%d", 1+r.IntN(254))
	case 4:
		return fmt.Sprintf("2001:db8:%x:%x::%x", r.IntN(65536), r.IntN(65536), 1+r.IntN(65535))
	case 5:
		return fmt.Sprintf("fe80::%x:%x:%x:%x", r.IntN(65536), r.IntN(65536), r.IntN(65536), 1+r.IntN(65535))
	default:
		return fmt.Sprintf("2001:0db8:%04x:%04x:%04x:%04x:%04x:%04x", r.IntN(65536), r.IntN(65536), r.IntN(65536), r.IntN(65536), r.IntN(65536), r.IntN(65536))
	}
}

func (g *gen) macValue() string {
	h := g.f.fromSet("0123456789abcdef", 12)
	switch g.f.r.IntN(4) {
	case 0:
		return group(strings.ToUpper(h), []int{2, 2, 2, 2, 2}, ":")
	case 1:
		return group(h, []int{2, 2, 2, 2, 2}, ":")
	case 2:
		return group(strings.ToUpper(h), []int{2, 2, 2, 2, 2}, "-")
	default:
		return group(h, []int{4, 4}, ".")
	}
}

func (g *gen) cryptoValue() string {
	switch g.f.r.IntN(6) {
	case 0:
		return g.f.btcBase58(0)
	case 1:
		return g.f.btcBase58(5)
	case 2:
		return g.f.btcBech32(false)
	case 3:
		return g.f.btcBech32(true)
	case 4:
		return g.f.eth(true)
	default:
		return g.f.eth(false)
	}
}

func (g *gen) urlValue() string {
	host := g.pick([]string{"docs.example.com", "wiki.corp.example", "api.example.org", "status.example.net", "intranet.fabrikam.test", "files.example.com:8443", "grafana.ops.example"})
	path := g.pick([]string{"/", "/guide/install", "/d/abc123/latency?orgId=1&from=now-6h", "/v2/reports/2024-03.pdf", "/tickets/OPS-4471#comment-12", "/search?q=refund+policy"})
	if g.f.r.IntN(6) == 0 {
		return "www.example.com" + path
	}
	return g.pick([]string{"https://", "https://", "http://"}) + host + path
}

// secretValue returns a SECRET-labelled fragment: prefix (unlabelled),
// secret (labelled), suffix.
func (g *gen) secret() (pre, sec, post string) {
	f := g.f
	k := f.r.IntN(16)
	g.chk = k == 2 || k == 4 || k == 11 || k == 12
	switch k {
	case 0:
		return "", "AKIA" + f.fromSet("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16), ""
	case 1:
		return "aws_secret_access_key = ", f.fromSet(base62+"/+", 40), ""
	case 2:
		return "", f.githubToken(g.pick([]string{"ghp_", "gho_", "ghs_", "ghu_", "ghr_"})), ""
	case 3:
		return "", "github_pat_" + f.alnum(22) + "_" + f.alnum(59), ""
	case 4:
		return "", f.githubToken("npm_"), ""
	case 5:
		return "", "glpat-" + f.fromSet(base62+"-_", 20), ""
	case 6:
		return "", "xoxb-" + f.digits(12) + "-" + f.digits(13) + "-" + f.alnum(24), ""
	case 7:
		return "", g.pick([]string{"sk_live_", "rk_live_"}) + f.alnum(24+f.r.IntN(76)), ""
	case 8:
		return "", "sk-proj-" + f.fromSet(base62+"-_", 74) + "T3BlbkFJ" + f.fromSet(base62+"-_", 74), ""
	case 9:
		return "", "sk-ant-api03-" + f.fromSet(base62+"-_", 93) + "AA", ""
	case 10:
		return "", "AIza" + f.fromSet(base62+"-_", 35), ""
	case 11:
		return "Authorization: Bearer ", g.jwtValue(), ""
	case 12:
		return "", "-----BEGIN RSA PRIVATE KEY-----\n" + f.fromSet(base62+"+/", 64) + "\n" + f.fromSet(base62+"+/", 64) + "\n" + f.fromSet(base62+"+/", 40) + "==\n-----END RSA PRIVATE KEY-----", ""
	case 13:
		pair := [][2]string{{"DB_PASSWORD=", ""}, {"password: ", ""}, {"\"client_secret\": \"", "\""}, {"SECRET_KEY = '", "'"}, {"export API_TOKEN=", ""}}[f.r.IntN(5)]
		return pair[0], f.alnum(6) + g.pick([]string{"#", "!", "$", "%"}) + f.alnum(10), pair[1]
	case 14:
		return "", "sk-" + f.alnum(20) + "T3BlbkFJ" + f.alnum(20), ""
	default:
		return "", "postgres://app:" + f.alnum(16) + "@db.internal.example:5432/orders", ""
	}
}

// checksummedSecret returns a secret whose format the detector verifies:
// GitHub or npm tokens (CRC32), a JWT, a PEM private key.
func (g *gen) checksummedSecret() (pre, sec, post string) {
	f := g.f
	g.chk = true
	switch f.r.IntN(5) {
	case 0, 1:
		return "", f.githubToken(g.pick([]string{"ghp_", "gho_", "ghs_", "ghu_", "ghr_"})), ""
	case 2:
		return "", f.githubToken("npm_"), ""
	case 3:
		return "", g.jwtValue(), ""
	default:
		kind := g.pick([]string{"RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"})
		return "", "-----BEGIN " + kind + "-----\n" + f.fromSet(base62+"+/", 64) + "\n" + f.fromSet(base62+"+/", 64) + "\n" + f.fromSet(base62+"+/", 22) + "==\n-----END " + kind + "-----", ""
	}
}

func (g *gen) jwtValue() string {
	hdr := g.pick([]string{`{"alg":"HS256","typ":"JWT"}`, `{"alg":"RS256","kid":"k1","typ":"JWT"}`, `{"typ":"JWT","alg":"ES256"}`})
	payload := fmt.Sprintf(`{"sub":"%s","iat":%d,"exp":%d,"scope":"read write"}`, g.f.alnum(10), 1700000000+g.f.r.IntN(9999999), 1710000000+g.f.r.IntN(9999999))
	return b64url(hdr) + "." + b64url(payload) + "." + g.f.fromSet(base62+"-_", 43)
}

// ---- hard negatives ----

func (g *gen) negative() string {
	f, r := g.f, g.f.r
	switch r.IntN(26) {
	case 0:
		h := f.fromSet("0123456789abcdef", 32)
		return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
	case 1:
		return fmt.Sprintf("ORD-%d-%06d", 2020+r.IntN(6), r.IntN(1000000))
	case 2:
		return "order #" + f.digits(6+r.IntN(14))
	case 3:
		return fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02d.%03dZ", 1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000))
	case 4:
		return f.fromSet("0123456789abcdef", 40)
	case 5:
		return "sha256:" + f.fromSet("0123456789abcdef", 64)
	case 6:
		return fmt.Sprintf("v%d.%d.%d", r.IntN(5), r.IntN(30), r.IntN(20))
	case 7:
		return fmt.Sprintf("%d.%d.%d.%d", 10+r.IntN(5), r.IntN(10), 19000+r.IntN(3000), r.IntN(1000))
	case 8:
		// ISBN-13 with hyphens
		d := "978" + f.digits(9)
		sum := 0
		for i, c := range d {
			w := 1
			if i%2 == 1 {
				w = 3
			}
			sum += w * int(c-'0')
		}
		d += fmt.Sprint((10 - sum%10) % 10)
		return "ISBN " + d[:3] + "-" + d[3:4] + "-" + d[4:7] + "-" + d[7:12] + "-" + d[12:]
	case 9:
		return fmt.Sprintf("ID 1%02d-%03d-%04d", r.IntN(100), r.IntN(1000), r.IntN(10000))
	case 10:
		return fmt.Sprintf("%d", 1700000000000+r.IntN(99999999999))
	case 11:
		return fmt.Sprintf("$%d,%03d.%02d", 1+r.IntN(999), r.IntN(1000), r.IntN(100))
	case 12:
		return fmt.Sprintf("%02d:%02d:%02d", r.IntN(24), r.IntN(60), r.IntN(60))
	case 13:
		return "1Z" + f.fromSet("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 16)
	case 14:
		return fmt.Sprintf("INV-%06d", r.IntN(1000000))
	case 15:
		return "commit " + f.fromSet("0123456789abcdef", 7)
	case 16:
		return fmt.Sprintf("%d.%d%d%d", r.IntN(90), r.IntN(10), r.IntN(10), r.IntN(10)) + fmt.Sprintf(",-%d.%04d", 100+r.IntN(80), r.IntN(10000))
	case 17:
		return badLuhn(f.card("visa"))
	case 18:
		return "0x" + f.fromSet("0123456789abcdef", 64)
	case 19:
		return "ghp_" + f.alnum(36)
	case 20:
		return "build " + fmt.Sprintf("%d.%02d.%02d.%d", 2024, 1+r.IntN(12), 1+r.IntN(28), r.IntN(10))
	case 21:
		return fmt.Sprintf("%s@%d.%d.%d", g.pick([]string{"lodash", "react", "express", "left-pad"}), r.IntN(20), r.IntN(30), r.IntN(20))
	case 22:
		return fmt.Sprintf("@%s", g.pick([]string{"types/node", "babel/core", "aws-sdk/client-s3", "octocat", "here"}))
	case 23:
		return fmt.Sprintf("+%d%%", r.IntN(100))
	case 24:
		return "password=${" + g.pick([]string{"DB_PASSWORD", "SECRET", "TOKEN"}) + "}"
	default:
		return fmt.Sprintf("%d-%02d-%02d", 2000+r.IntN(30), 1+r.IntN(12), 1+r.IntN(28))
	}
}

func b64url(s string) string {
	const enc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []byte
	b := []byte(s)
	for len(b) >= 3 {
		v := uint(b[0])<<16 | uint(b[1])<<8 | uint(b[2])
		out = append(out, enc[v>>18&63], enc[v>>12&63], enc[v>>6&63], enc[v&63])
		b = b[3:]
	}
	switch len(b) {
	case 1:
		v := uint(b[0]) << 16
		out = append(out, enc[v>>18&63], enc[v>>12&63])
	case 2:
		v := uint(b[0])<<16 | uint(b[1])<<8
		out = append(out, enc[v>>18&63], enc[v>>12&63], enc[v>>6&63])
	}
	return string(out)
}

// fill expands a template: {EMAIL} {PHONE} {CARD} {IBAN} {SSN} {IP} {MAC}
// {CRYPTO} {URL} {SECRET} are labelled; {NEG} is a hard negative; {NAME}
// a person's name (not labelled: names are not a built-in type).
func (g *gen) fill(tpl string) {
	for {
		i := strings.IndexByte(tpl, '{')
		if i < 0 {
			g.text.WriteString(tpl)
			return
		}
		j := strings.IndexByte(tpl[i:], '}')
		slot := ""
		if j > 0 {
			slot = tpl[i+1 : i+j]
		}
		known := true
		switch slot {
		case "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "MAC", "CRYPTO", "URL", "SECRET", "CSECRET", "NEG", "NAME":
		default:
			known = false
		}
		if !known {
			g.text.WriteString(tpl[:i+1])
			tpl = tpl[i+1:]
			continue
		}
		g.text.WriteString(tpl[:i])
		tpl = tpl[i+j+1:]
		switch slot {
		case "EMAIL":
			g.add(Email, g.email())
		case "PHONE":
			g.add(Phone, g.phone())
		case "CARD":
			g.add(CreditCard, g.cardValue())
		case "IBAN":
			g.add(IBAN, g.ibanValue())
		case "SSN":
			g.add(USSSN, g.ssnValue())
		case "IP":
			g.add(IPAddress, g.ip())
		case "MAC":
			g.add(MACAddress, g.macValue())
		case "CRYPTO":
			g.add(Crypto, g.cryptoValue())
		case "URL":
			g.add(URL, g.urlValue())
		case "SECRET", "CSECRET":
			var pre, sec, post string
			if slot == "SECRET" {
				pre, sec, post = g.secret()
			} else {
				pre, sec, post = g.checksummedSecret()
			}
			g.add("", pre)
			g.add(Secret, sec)
			g.add("", post)
		case "NEG":
			g.add("", g.negative())
		case "NAME":
			fn := g.pick(firstNames)
			ln := g.pick(lastNames)
			g.add("", strings.ToUpper(fn[:1])+fn[1:]+" "+strings.ToUpper(ln[:1])+ln[1:])
		}
	}
}

type tplSet struct {
	kind  string
	times int
	tpls  []string
}

var corpusTemplates = []tplSet{
	{"prose", 5, []string{
		"Hi team, {NAME} asked me to forward the contract; you can reach her at {EMAIL} or on {PHONE} until Friday.",
		"Please refund order {NEG} to the card ending in the number below: {CARD}. The customer confirmed by phone.",
		"Wire the deposit to IBAN {IBAN} (account holder {NAME}) before the end of the month, reference {NEG}.",
		"The applicant's social security number is {SSN} and the file was opened on {NEG}.",
		"I could not reach the printer at {IP}; its MAC address is {MAC} according to the DHCP lease table.",
		"Send the bounty to {CRYPTO} once the fix for {NEG} is released.",
		"The runbook at {URL} explains how to rotate the key; do not paste {SECRET} into chat again.",
		"Thanks for your patience. Your ticket {NEG} has been escalated and {NAME} ({EMAIL}) will follow up.",
		"My new number is {PHONE}, the old one stopped working after the move.",
		"Can you double-check the payment? The card {CARD} was declined twice at {NEG}.",
		"For payroll, update my bank details to {IBAN}; the old account is closed.",
		"Reminder: {NAME} still needs to send the signed W-4 with SSN {SSN} to HR.",
		"The VPN gateway moved to {IP} and the old address will be retired on {NEG}.",
		"Donations are welcome at {CRYPTO}, every satoshi helps keep the mirror online.",
		"We published the postmortem at {URL}; the root cause was a stale DNS record.",
		"Someone committed {SECRET} to the public repo yesterday; it has been revoked.",
		"The quarterly numbers look fine: revenue grew 12% and churn stayed flat at {NEG}.",
		"Call me on {PHONE} or write to {EMAIL} if the delivery window changes.",
		"Our office network uses {IP} for the proxy and the build agents live behind it.",
		"{NAME} shared {URL} in the standup; it is the draft of the migration plan.",
	}},
	{"code", 4, []string{
		"import os\n\nDB_URL = os.environ.get(\"DB_URL\")\nADMIN_EMAIL = \"{EMAIL}\"\n{SECRET}\n\ndef connect():\n    return create_engine(DB_URL)\n",
		"// config.go\nconst (\n\tsupportPhone = \"{PHONE}\"\n\tdocsURL      = \"{URL}\"\n)\n\nfunc init() { log.Printf(\"build %s\", \"{NEG}\") }\n",
		"const fixtures = {\n  customer: { email: '{EMAIL}', card: '{CARD}' },\n  orderId: '{NEG}',\n};\nmodule.exports = fixtures;\n",
		"# .env\nAPP_ENV=production\nSMTP_FROM={EMAIL}\n{SECRET}\nLOG_LEVEL=info\n",
		"spec:\n  containers:\n    - name: api\n      image: registry.example.com/api:{NEG}\n      env:\n        - name: PAYOUT_IBAN\n          value: \"{IBAN}\"\n",
		"curl -s -H 'Accept: application/json' {URL} | jq '.items[] | select(.owner == \"{EMAIL}\")'\n",
		"def test_mask():\n    assert mask(\"{SSN}\") == \"***-**-****\"\n    assert normalize(\"{NEG}\") is None\n",
		"server {\n    listen 443 ssl;\n    allow {IP};\n    deny all;\n    # owner: {EMAIL}\n}\n",
		"wallets = [\n    \"{CRYPTO}\",\n    \"{CRYPTO}\",\n]\n# checked at {NEG}\n",
		"let client = Client::new(\"{SECRET}\");\nlet resp = client.get(\"{URL}\").send()?;\n",
		"INSERT INTO customers (email, phone, created_at) VALUES ('{EMAIL}', '{PHONE}', '{NEG}');\n",
		"ip link set dev eth0 address {MAC}\nip addr add {IP}/24 dev eth0\n",
	}},
	{"json", 4, []string{
		`{"content":[{"type":"text","text":"Found 1 customer: {NAME}, {EMAIL}, phone {PHONE}"}],"isError":false}`,
		`{"structuredContent":{"customer_id":"{NEG}","email":"{EMAIL}","card_last_used":"{CARD}"}}`,
		`{"results":[{"id":"{NEG}","iban":"{IBAN}","holder":"{NAME}"},{"id":"{NEG}","iban":"{IBAN}"}]}`,
		`{"employee":{"name":"{NAME}","ssn":"{SSN}","start_date":"{NEG}"}}`,
		`{"device":{"hostname":"build-07","ip":"{IP}","mac":"{MAC}","last_seen":"{NEG}"}}`,
		`{"payout":{"currency":"BTC","address":"{CRYPTO}","requested":"{NEG}"}}`,
		`{"links":{"self":"{URL}","docs":"{URL}"},"version":"{NEG}"}`,
		`{"config":{"region":"eu-west-1","credentials":"{SECRET}","retries":3}}`,
		`{"messages":[{"role":"user","content":"my card is {CARD} and my email {EMAIL}"}]}`,
		`{"arguments":{"to":"{EMAIL}","subject":"Invoice {NEG}","body":"Please pay to {IBAN}"}}`,
		`{"hits":[{"_id":"{NEG}","_source":{"client_ip":"{IP}","user_agent":"curl/8.5.0","path":"/health"}}]}`,
	}},
	{"log", 5, []string{
		"2024-03-18T09:12:44.117Z INFO  login ok user={EMAIL} ip={IP} session={NEG}\n",
		"2024-03-18T09:13:02.551Z WARN  payment declined card={CARD} order={NEG} reason=insufficient_funds\n",
		"Mar 18 09:14:11 gw01 dhcpd[812]: DHCPACK on {IP} to {MAC} via eth1\n",
		"2024-03-18 09:15:40,102 ERROR auth: token rejected header='{SECRET}' request_id={NEG}\n",
		"[2024-03-18 09:16:03] payout.INFO: queued transfer to {IBAN} amount=1200.00 EUR ref={NEG}\n",
		"2024-03-18T09:17:20Z DEBUG webhook POST {URL} status=204 took=38ms\n",
		"I0318 09:18:44.006 12 handler.go:88] sms sent to {PHONE} template=otp id={NEG}\n",
		"2024-03-18T09:19:31Z INFO kyc check passed subject_ssn={SSN} score=0.97 trace={NEG}\n",
		"2024-03-18T09:20:09Z INFO deposit detected address={CRYPTO} confirmations=3 block={NEG}\n",
	}},
	{"secrets", 4, []string{
		"GITHUB_TOKEN={CSECRET}\nNPM_CONFIG_LOGLEVEL=warn\n",
		"- name: Publish\n  run: npm publish\n  env:\n    NODE_AUTH_TOKEN: {CSECRET}\n",
		"Here is the key you asked for, please delete this message after copying it:\n{CSECRET}\n",
		"2024-03-18T10:01:12Z WARN upstream 401 for bearer {CSECRET} path=/v1/items\n",
		"git remote set-url origin https://x-access-token:{CSECRET}@github.com/acme/api.git\n",
		"The CI log printed {CSECRET} before the masking step ran, rotate it.\n",
		"const cfg = { token: \"{CSECRET}\", retries: 2 };\n",
		"kubectl create secret generic deploy --from-literal=key='{CSECRET}'\n",
	}},
	{"negative", 6, []string{
		"Release {NEG} fixes the race in the scheduler; see commit notes for build {NEG}.",
		"Request {NEG} finished at {NEG} after 3 retries.",
		"The checksum of the artifact is {NEG} and the signature was verified.",
		"Order {NEG} and order {NEG} were merged into shipment {NEG}.",
		"Tracking number {NEG}, expected delivery {NEG}.",
		"Coordinates {NEG} were geocoded at {NEG}.",
		"Total due: {NEG}; invoice {NEG}; paid on {NEG}.",
		"Upgrade to {NEG} or later; {NEG} is end-of-life since {NEG}.",
		"{NEG} {NEG} {NEG}",
		"Meeting moved to {NEG}. Agenda: roadmap, hiring, {NEG} retro.",
		"Use {NEG} in package.json and mention {NEG} in the changelog.",
		"Temperature rose {NEG} compared with {NEG}.",
		"Config: retries=3, timeout=2500ms, {NEG}, region=eu-west-1.",
		"Benchmark: 1,234,567 ops in 00:00:12.345, p99 4.2ms, build {NEG}.",
		"Error code 0x80070005 at offset 0x1f40; see KB{NEG}.",
	}},
}

// generateCorpus builds the corpus deterministically.
func generateCorpus() []corpusItem {
	f := newFaker(20240318)
	var items []corpusItem
	for _, set := range corpusTemplates {
		for ti, tpl := range set.tpls {
			for k := 0; k < set.times; k++ {
				g := &gen{f: f, json: set.kind == "json"}
				g.fill(tpl)
				labs := g.labs
				if labs == nil {
					labs = []corpusLabel{}
				}
				items = append(items, corpusItem{ID: fmt.Sprintf("gen-%s-%02d-%d", set.kind, ti, k), Kind: set.kind, Text: g.text.String(), Entities: labs})
			}
		}
	}
	return items
}

func encodeCorpus(items []corpusItem) []byte {
	var buf bytes.Buffer
	for _, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			panic(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}
