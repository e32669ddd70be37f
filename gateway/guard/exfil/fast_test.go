package exfil

import (
	"strings"
	"testing"
)

// FuzzFastPath: the allocation-free check gives exactly the violations of
// the slow path (extract every link, normalize, compare), for text and
// for JSON.
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{
		"see https://docs.example.com/a and ![x](https://evil.example/p?d=1) www.wiki.corp.example/x",
		"https://DOCS.example.com https://docs.example.com.evil.test https://docs.example.com@evil.example/",
		"http://127.0.0.1/ http://0x7f.1/ //evil.example/x https://xn--bcher-kva.example/ https://a.corp.example./",
		`{"url":"https://x.corp.example/y","to":"eve@evil.example","host":"api.corp.example","body":"go https://evil.example/"}`,
		"[a](https://docs.example.com\\@evil.example) https://docs.example.com%2eevil.example/",
	} {
		f.Add(s)
	}
	g, err := Compile(map[string]string{"allowed_domains": "docs.example.com, *.corp.example, 10.0.0.0/8"})
	if err != nil {
		f.Fatal(err)
	}
	slow := func(ls []Link) (n int) {
		for _, l := range ls {
			if _, bad := g.violation(l); bad {
				n++
			}
		}
		return n
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if fast, want := len(g.CheckText(b)), slow(ExtractText(b)); fast != want && want < MaxLinks {
			t.Fatalf("text %q: fast path %d violations, slow path %d", s, fast, want)
		}
		links, err := ExtractJSON(b)
		vs, err2 := g.CheckJSON(b)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("json errors differ: %v %v", err, err2)
		}
		if err == nil && len(vs) != slow(links) && len(links) < MaxLinks {
			t.Fatalf("json %q: fast path %d violations, slow path %d", s, len(vs), slow(links))
		}
	})
}

// TestLinkKeyFast: the allocation-free check of member names agrees with
// the lower-casing one.
func TestLinkKeyFast(t *testing.T) {
	slow := func(k string) bool {
		lk := strings.ToLower(k)
		for _, n := range linkKeys {
			if lk == n || strings.HasSuffix(lk, "_"+n) || strings.HasSuffix(lk, n) && len(lk) > len(n) && n != "to" && n != "cc" {
				return true
			}
		}
		return false
	}
	for _, k := range []string{"url", "URL", "webhook_url", "callbackUrl", "to", "reply_to", "goto", "photo", "cc", "acc", "x_cc", "Host",
		"hostname", "email", "Recipients", "address", "addr", "", "a", "destination", "redirect_uri", "SERVER", "targets", "tO"} {
		if got, want := isLinkKey([]byte(k)), slow(k); got != want {
			t.Errorf("isLinkKey(%q) = %v, want %v", k, got, want)
		}
	}
}
