package devidp

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

var loginPage = template.Must(template.New("login").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Mandate development sign-in</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">
<h1>Mandate development sign-in</h1>
<p><strong>Development only:</strong> no password is asked; you are signed in as whoever you name.</p>
{{if .Error}}<p style="color: #b00">{{.Error}}</p>{{end}}
<form method="get" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.ID}}">
<label>User <input name="user" value="{{.User}}" placeholder="alice@example.com" autofocus></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`))

// login is the development sign-in page (ISSUER/login?authRequestID=ID).
// With ?user=NAME (or the authorization request's login_hint) it signs in
// as NAME at once and redirects to the authorization callback; otherwise
// it shows a form asking for the name. GET and POST (form) both work.
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if status, err := parseForm(w, r); err != nil {
		http.Error(w, "cannot parse the request", status)
		return
	}
	id := r.Form.Get("authRequestID")
	if id == "" {
		http.Error(w, "authRequestID is missing: start at the authorization endpoint", http.StatusBadRequest)
		return
	}
	hint, err := p.store.loginHint(id)
	if err != nil {
		http.Error(w, "the authorization request is unknown or expired: start again at the authorization endpoint", http.StatusBadRequest)
		return
	}
	user := strings.TrimSpace(r.Form.Get("user"))
	if user == "" {
		user = hint
	}
	if user == "" {
		p.renderLogin(w, http.StatusOK, id, "", "")
		return
	}
	if err := p.store.completeLogin(r.Context(), id, user); err != nil {
		msg, status := "cannot sign in", http.StatusInternalServerError
		var oe *oidc.Error
		if errors.As(err, &oe) && oe.ErrorType != oidc.ServerError {
			msg, status = oe.Description, http.StatusBadRequest
		}
		p.renderLogin(w, status, id, user, msg)
		return
	}
	http.Redirect(w, r, op.AuthCallbackURL(p.op)(r.Context(), id), http.StatusFound)
}

func (p *Provider) renderLogin(w http.ResponseWriter, status int, id, user, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, struct{ Action, ID, User, Error string }{p.issuer + PathLogin, id, user, msg})
}
