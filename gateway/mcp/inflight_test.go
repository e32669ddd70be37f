package mcp

import (
	"context"
	"net/http"
	"testing"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// heldAuthz holds every question until released, after saying it was
// asked.
type heldAuthz struct {
	asked   chan<- struct{}
	release <-chan struct{}
}

func (a heldAuthz) Authorize(ctx context.Context, _ enforce.Request) (enforce.Decision, error) {
	a.asked <- struct{}{}
	select {
	case <-a.release:
	case <-ctx.Done():
	}
	return enforce.Decision{Reason: "held"}, nil
}

// TestInFlightRefusal: a subject at its in-flight cap is refused with
// the JSON-RPC limit error (-32005, HTTP 429, Retry-After), as rate limits
// are, while another subject's call goes on.
func TestInFlightRefusal(t *testing.T) {
	asked, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, "http://upstream.invalid/mcp", func(cfg *Config) {
		p, err := pipeline.New(pipeline.Config{PublicURL: cfg.PublicURL, Auth: cfg.Auth, Credentials: cfg.Credentials,
			Audit: cfg.Audit, Authz: heldAuthz{asked: asked, release: release}, MaxInFlightPerSubject: 1})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Pipeline = p
	})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	done := make(chan rawResp, 2)
	go func() { done <- e.post("alice-token", "github", init, nil) }()
	<-asked
	r := e.post("alice-token", "github", init, nil)
	code, msg, _ := r.rpcError()
	if r.status != http.StatusTooManyRequests || code != CodeLimited || r.header.Get("Retry-After") != "1" {
		t.Errorf("alice beyond her cap: %d %d %q %s", r.status, code, r.header.Get("Retry-After"), r.body)
	}
	if msg == "" {
		t.Errorf("no message: %s", r.body)
	}
	go func() { done <- e.post("bob-token", "github", init, nil) }()
	<-asked // bob's call reached the authorize stage: not refused
	close(release)
	for range 2 {
		if r := <-done; r.status == http.StatusTooManyRequests {
			t.Errorf("held call refused: %d %s", r.status, r.body)
		}
	}
}
