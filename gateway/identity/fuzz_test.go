package identity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mandatehq/mandate/gateway"
)

// FuzzAuthenticate feeds arbitrary Authorization header values (and
// query strings): Authenticate must never panic, and must answer a
// *gateway.AuthError (401 or 403) or an identity.
func FuzzAuthenticate(f *testing.F) {
	e := newEnv(f, nil)
	good := e.rs256(e.claims())
	for _, s := range []string{"", "Bearer", "Bearer ", "bearer x", "Basic abc", "Bearer " + good, "Bearer " + good[:len(good)/2],
		"Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.e30.", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.", "Bearer ===", "Bearer a=b",
		"Bearer \x00", "Bearer {\"payload\":\"\"}", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEifQ.eyJpc3MiOjF9.AAAA"} {
		f.Add(s, "")
	}
	f.Add("Bearer "+good, "access_token=1")
	f.Fuzz(func(t *testing.T, h, q string) {
		r := httptest.NewRequest(http.MethodPost, "https://gw.example/mcp/x", nil)
		r.URL.RawQuery = q
		r.Header["Authorization"] = []string{h}
		id, err := e.a.Authenticate(context.Background(), r, resource)
		if err == nil {
			if id == nil || id.Subject == "" {
				t.Fatalf("success without subject: %+v", id)
			}
			return
		}
		var ae *gateway.AuthError
		if !errors.As(err, &ae) || (ae.Status != 401 && ae.Status != 403) || ae.Description == "" {
			t.Fatalf("error %#v", err)
		}
		_ = WWWAuthenticate(ae, "https://gw.example/.well-known/oauth-protected-resource/mcp/x")
	})
}
