package pgscram

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

func TestMakeAndCheck(t *testing.T) {
	format := regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$`)
	for _, password := range []string{"pencil", "", "pässwörd", "I\u00ADX"} {
		t.Run(fmt.Sprintf("%q", password), func(t *testing.T) {
			v, err := Verifier(password)
			if err != nil {
				t.Fatal(err)
			}
			if !format.MatchString(v) {
				t.Fatalf("verifier %q not in PostgreSQL format", v)
			}
			if !Check(v, password) {
				t.Fatal("password does not match its verifier")
			}
			if Check(v, password+"x") {
				t.Fatal("wrong password matches")
			}
			v2, err := Verifier(password)
			if err != nil {
				t.Fatal(err)
			}
			if v2 == v {
				t.Fatal("salt is not random")
			}
		})
	}
	// SASLprep maps the soft hyphen to nothing, as PostgreSQL does.
	v, err := Verifier("I\u00ADX")
	if err != nil {
		t.Fatal(err)
	}
	if !Check(v, "IX") {
		t.Fatal("SASLprep not applied")
	}
}

// TestVerifierRFC7677 runs the SCRAM-SHA-256 exchange of RFC 7677 against
// credentials derived by this package: the server signature must match the
// RFC's.
func TestVerifierRFC7677(t *testing.T) {
	salt, err := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := Derive("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(Format(creds))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return parsed, nil })
	if err != nil {
		t.Fatal(err)
	}
	conv := srv.WithNonceGenerator(func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }).NewConversation()
	if _, err := conv.Step("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"); err != nil {
		t.Fatal(err)
	}
	final, err := conv.Step("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="; final != want {
		t.Fatalf("server final %q, want %q", final, want)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := Verifier("x")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	for _, v := range []string{
		"",
		"md5abcdef",
		"SCRAM-SHA-1$" + parts[1] + "$" + parts[2],
		"SCRAM-SHA-256$" + parts[1],
		"SCRAM-SHA-256$0:" + strings.SplitN(parts[1], ":", 2)[1] + "$" + parts[2],
		"SCRAM-SHA-256$x:" + strings.SplitN(parts[1], ":", 2)[1] + "$" + parts[2],
		"SCRAM-SHA-256$4096:!!$" + parts[2],
		"SCRAM-SHA-256$" + parts[1] + "$" + strings.SplitN(parts[2], ":", 2)[0],
		"SCRAM-SHA-256$" + parts[1] + "$AAAA:AAAA",
	} {
		if _, err := Parse(v); err == nil {
			t.Errorf("accepted %q", v)
		}
		if Check(v, "x") {
			t.Errorf("Check accepted %q", v)
		}
	}
}
