package guardstage

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// released is the content a chat stream piece carries to the client.
func released(t testing.TB, piece string, v pipeline.Verdict) string {
	if v.Action == pipeline.Rewrite {
		piece = string(v.Body)
	}
	return streamText(t, []string{piece})
}

// TestMonitoredStreamHoldsNothing: a policy that changes nothing (monitor
// mode, action 'monitor') lets every delta through as it comes, and still
// finds what is split across deltas; an enforcing mask holds back only a
// possible entity's start.
func TestMonitoredStreamHoldsNothing(t *testing.T) {
	deltas := []string{"Card 4111", " 1111 1111 1111, mail bob@ex", "ample.com or see https://evil.exa", "mple/x now"}
	for _, tc := range []struct {
		name    string
		mode    catalog.PolicyDef
		first   string
		outcome string
	}{
		{"monitor mode", catalog.PolicyDef{Kind: catalog.BuiltinPrefix + "detect_sensitive_data", Result: true, Monitor: true,
			Options: map[string]string{"entities": "CREDIT_CARD,EMAIL"}}, "Card 4111", "p0:result:monitor:would_mask:EMAIL=1:CREDIT_CARD=1"},
		{"action monitor", catalog.PolicyDef{Kind: catalog.BuiltinPrefix + "detect_sensitive_data", Result: true,
			Options: map[string]string{"entities": "CREDIT_CARD,EMAIL", "action": "monitor"}}, "Card 4111", "p0:result:enforce:allow:EMAIL=1:CREDIT_CARD=1"},
		{"exfiltration monitored", catalog.PolicyDef{Kind: catalog.BuiltinPrefix + "prevent_exfiltration", Result: true, Monitor: true,
			Options: map[string]string{"allowed_domains": "docs.example.com"}}, "Card 4111", "p0:result:monitor:would_deny:destination=1"},
		{"enforced mask", catalog.PolicyDef{Kind: catalog.BuiltinPrefix + "detect_sensitive_data", Result: true,
			Options: map[string]string{"entities": "CREDIT_CARD,EMAIL"}}, "Card ", "p0:result:enforce:mask:EMAIL=1:CREDIT_CARD=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := llmEnv(t, tc.mode)
			c := e.llmCall("frontier", "chat.completions", `{"model":"frontier","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
			e.guardCall(c)
			var got []string
			for i, d := range append(deltas, "") {
				piece := chatChunk(d, "")
				if i == len(deltas) {
					piece = chatChunk("", "stop") + "data: [DONE]\n\n"
				}
				v, err := e.llmPiece(c, piece, false)
				if err != nil || v.Action == pipeline.Deny {
					t.Fatalf("piece %d: %+v %v", i, v, err)
				}
				got = append(got, released(t, piece, v))
			}
			if got[0] != tc.first {
				t.Fatalf("first delta released %q, want %q (all: %q)", got[0], tc.first, got)
			}
			if o := outcomes(c); o != tc.outcome {
				t.Fatalf("outcomes %s", o)
			}
			if tc.name != "enforced mask" && strings.Join(got, "") != strings.Join(deltas, "") {
				t.Fatalf("monitored stream changed: %q", got)
			}
		})
	}
}

// BenchmarkMaskedStreamTTFT is what an enforcing detect_sensitive_data
// (mask, all built-in entities) adds to time to first token on a chat
// stream: the guard's time on the first delta (p50, µs) and how many
// upstream deltas it takes before the client gets its first text
// (deltas-to-first-token; 1 means the first delta goes out at once, 2 that
// the client waits for the upstream's next event). The baseline (no
// policy) is 0 µs and 1 delta. "words" are token-sized deltas as OpenAI
// and Anthropic stream them ("Sure", ",", " here"…); "chunks" the 16-byte
// word-boundary deltas of the fake upstream; "words-plain-first" starts
// with a bare word ("The"), which could still grow into an e-mail address
// or a key, so it waits for the next delta.
func BenchmarkMaskedStreamTTFT(b *testing.B) {
	answer := "Sure, here is the customer record you asked for. Jane Roe (jane.roe@example.com) paid with 4111 1111 1111 1111 on May 3."
	words := func(answer string) []string {
		var out []string
		for i, w := range strings.SplitAfter(answer, " ") {
			if i > 0 {
				w = " " + strings.TrimSuffix(w, " ")
			} else {
				w = strings.TrimSuffix(w, " ")
			}
			out = append(out, w)
		}
		return out
	}
	chunks := func() []string {
		var out []string
		s := answer
		for len(s) > 16 {
			cut := 16
			if i := strings.IndexByte(s[16:], ' '); i >= 0 && i < 16 {
				cut = 16 + i + 1
			}
			out, s = append(out, s[:cut]), s[cut:]
		}
		return append(out, s)
	}()
	for _, shape := range []struct {
		name   string
		deltas []string
	}{{"words", words(answer)}, {"words-plain-first", words("The" + strings.TrimPrefix(answer, "Sure,"))}, {"chunks", chunks}} {
		for _, policy := range []string{"none", "mask"} {
			b.Run(shape.name+"/"+policy, func(b *testing.B) {
				var defs []catalog.PolicyDef
				if policy == "mask" {
					defs = append(defs, builtinDef("detect_sensitive_data", nil))
				}
				e := llmEnv(b, defs...)
				pieces := make([]string, len(shape.deltas))
				for i, d := range shape.deltas {
					pieces[i] = chatChunk(d, "")
				}
				ctx := context.Background()
				var lat []time.Duration
				waited := 0
				for b.Loop() {
					c := e.llmCall("frontier", "chat.completions", `{"model":"frontier","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
					t0 := time.Now()
					if _, err := e.stage.Call(ctx, c, c.Content); err != nil {
						b.Fatal(err)
					}
					rg, err := e.stage.Result(ctx, c)
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for i, p := range pieces {
						v := pipeline.Verdict{}
						if rg != nil {
							v, err = rg.Piece(ctx, c, &pipeline.Content{Format: c.Content.Format, Body: []byte(p)})
							if err != nil {
								b.Fatal(err)
							}
						}
						if i == 0 {
							lat = append(lat, time.Since(t0))
						}
						if released(b, p, v) != "" {
							n = i + 1
							break
						}
					}
					waited += n
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(waited)/float64(len(lat)), "deltas-to-first-token")
			})
		}
	}
}
