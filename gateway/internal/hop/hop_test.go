package hop

import (
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"testing"
	"time"
)

type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// TestSend: a request goes straight to the transport (its error comes
// back as is) only for a client that follows no redirects and has no jar
// and no timeout, and a URL without user info; every other goes through
// Client.Do (its error wrapped in *url.Error).
func TestSend(t *testing.T) {
	sentinel := errors.New("transport reached")
	jar, _ := cookiejar.New(nil)
	tr := failing{sentinel}
	for _, tc := range []struct {
		name        string
		cl          *http.Client
		noRedirects bool
		url         string
		direct      bool
	}{
		{"plain", &http.Client{Transport: tr}, true, "http://up.invalid/mcp", true},
		{"redirects", &http.Client{Transport: tr}, false, "http://up.invalid/mcp", false},
		{"jar", &http.Client{Transport: tr, Jar: jar}, true, "http://up.invalid/mcp", false},
		{"timeout", &http.Client{Transport: tr, Timeout: time.Minute}, true, "http://up.invalid/mcp", false},
		{"user info", &http.Client{Transport: tr}, true, "http://u:p@up.invalid/mcp", false},
	} {
		req, err := http.NewRequest(http.MethodPost, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Send(tc.cl, tc.noRedirects, req)
		if !errors.Is(err, sentinel) {
			t.Fatalf("%s: %v, want the transport's error", tc.name, err)
		}
		var ue *url.Error
		if direct := !errors.As(err, &ue); direct != tc.direct {
			t.Errorf("%s: straight to the transport %v, want %v (%v)", tc.name, direct, tc.direct, err)
		}
	}
}
