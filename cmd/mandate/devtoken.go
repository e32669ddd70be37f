package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mandatehq/mandate/gateway/devidp"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// runDevToken implements `mandate dev-token`: an access token from the
// DEVELOPMENT identity provider of a running `mandate serve --dev`, for
// trying the gateway from a shell. It reads DATA_DIR/dev-idp.json (issuer,
// shared client secret, user assertion key) and asks the running provider
// over HTTP: a user token by the JWT bearer grant and, with --agent, the
// agent's client-credentials token and an RFC 8693 exchange of the two
// (sub = user, act.sub = agent). Only the access token goes to stdout.
func runDevToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev-token", args, stdout, stderr)
	dataDir := "./mandate-data"
	if v, ok := os.LookupEnv(envName("data-dir")); ok {
		dataDir = v
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "data directory of the running \"mandate serve --dev\" (holds dev-idp.json)")
	user := fs.String("user", "", "the user the token is for, e.g. alice@example.com (required)")
	agent := fs.String("agent", "", "the agent (service principal) acting on the user's behalf, e.g. coding-agent: the token gets act.sub = AGENT")
	audience := fs.String("audience", "", "the token's audience (default: the gateway's canonical URL the provider was started with)")
	scope := fs.String("scope", "", "space-separated scopes to request (default: none)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mandate dev-token --user USER [--agent AGENT] [--audience URL] [--data-dir DIR]

Prints an access token (a JWT) from the DEVELOPMENT identity provider of a
running "mandate serve --dev" on the same data directory. Not for production.

Without --agent the token is the user's own (sub = USER). With --agent the
agent's client-credentials token and the user's token are exchanged (RFC 8693)
for one with sub = USER and act = {"sub": AGENT}: the agent acting on the
user's behalf.

Example:
  TOKEN=$(mandate dev-token --user alice@example.com --agent coding-agent)
  curl -H "Authorization: Bearer $TOKEN" ...

Flags:
`)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(fs.Output(), "  --%s\n      %s%s\n", f.Name, f.Usage, defaultNote(f))
		})
		fmt.Fprintf(fs.Output(), "\nEnvironment: %s sets the default of --data-dir.\n", envName("data-dir"))
	}
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if *user == "" {
		return errors.New("--user is required (e.g. --user alice@example.com)")
	}
	c, err := devidp.NewClient(dataDir)
	if errors.Is(err, devidp.ErrNoState) {
		return fmt.Errorf("%w: start the development identity provider first: mandate serve --dev --data-dir %s", err, dataDir)
	}
	if err != nil {
		return err
	}
	// A server with TLS on its HTTP listener presents the data dir's
	// generated certificate: trust it (and the system CAs).
	if b, err := os.ReadFile(filepath.Join(dataDir, pgwire.GeneratedCertFile)); err == nil {
		if blk, _ := pem.Decode(b); blk != nil && blk.Type == "CERTIFICATE" {
			hc := trustingOwnCert(fingerprint(blk.Bytes))
			hc.Timeout = 30 * time.Second
			c.HTTP = hc
		}
	}
	opts := devidp.TokenOptions{Scopes: strings.Fields(*scope)}
	if *audience != "" {
		opts.Audience = []string{*audience}
	}
	tok, err := devToken(ctx, c, *user, *agent, opts)
	if errors.Is(err, devidp.ErrNotRunning) {
		return fmt.Errorf("%w\nis \"mandate serve --dev --data-dir %s\" running?", err, dataDir)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.AccessToken)
	return err
}

func devToken(ctx context.Context, c *devidp.Client, user, agent string, opts devidp.TokenOptions) (*devidp.Token, error) {
	if agent == "" {
		t, err := c.UserToken(ctx, user, opts)
		if err != nil {
			return nil, fmt.Errorf("user token for %s: %w", user, err)
		}
		return t, nil
	}
	userTok, err := c.UserToken(ctx, user, devidp.TokenOptions{})
	if err != nil {
		return nil, fmt.Errorf("user token for %s: %w", user, err)
	}
	agentTok, err := c.ClientToken(ctx, agent, devidp.TokenOptions{})
	if err != nil {
		return nil, fmt.Errorf("client credentials token for %s: %w", agent, err)
	}
	t, err := c.Exchange(ctx, agent, userTok.AccessToken, agentTok.AccessToken, opts)
	if err != nil {
		return nil, fmt.Errorf("token exchange (%s on behalf of %s): %w", agent, user, err)
	}
	return t, nil
}
