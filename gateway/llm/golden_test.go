package llm

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/internal/sse"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

var goldenNow = time.Unix(1_750_000_000, 0)

// golden compares got with testdata/<name>.golden (or rewrites it).
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (go test -update rewrites it); got:\n%s", path, got)
	}
}

func indent(b []byte) json.RawMessage {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return json.RawMessage(marshal(string(b)))
	}
	return out.Bytes()
}

func endpointOfFile(name string) Endpoint {
	switch {
	case strings.HasSuffix(name, ".chat.json"):
		return ChatCompletions
	case strings.HasSuffix(name, ".messages.json"):
		return Messages
	case strings.HasSuffix(name, ".responses.json"):
		return Responses
	}
	return Embeddings
}

// TestGoldenRequests parses real clients' requests (Claude Code, Codex
// CLI, the SDKs), and records what governance reads from them, the
// same-format fast path's byte edits, and the cross-format translation.
func TestGoldenRequests(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	if len(files) == 0 {
		t.Fatal("no request files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e := endpointOfFile(f)
			req, err := Parse(e, body, Limits{})
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			out := map[string]any{}
			texts := req.Texts()
			var spans []string
			for _, s := range texts {
				text := s.Text
				if len(text) > 48 {
					text = text[:48] + "…"
				}
				spans = append(spans, s.Role+"/"+s.Kind+": "+text)
			}
			out["parse"] = map[string]any{
				"endpoint": e.String(), "model": req.Model, "stream": req.Stream, "include_usage": req.IncludeUsage,
				"max_tokens": req.MaxTokens, "input_tokens_estimate": req.InputTokens, "tools": req.Tools,
				"tool_choice": req.ToolChoice, "response_format": req.ResponseFormat, "user": req.User,
				"messages": req.Messages, "images": req.Images, "texts": spans,
			}
			same := &Destination{Service: "p", Provider: ProviderOpenAI, Model: "gpt-4.1"}
			other := &Destination{Service: "p", Provider: ProviderAnthropic, Model: "claude-sonnet-4-5"}
			if e.Format() == FormatAnthropic {
				same, other = other, same
			}
			rw := rewriteBody(req, same, "u_pseudonym")
			if !json.Valid(rw) {
				t.Fatalf("rewritten body is not JSON: %s", rw)
			}
			if _, err := Parse(e, rw, Limits{}); err != nil {
				t.Fatalf("rewritten body does not parse: %v", err)
			}
			out["rewrite_"+same.Provider.Format().String()] = indent(rw)
			if other.Provider.Serves(e) {
				ob, err := prepare(req, other, "u_pseudonym", nil, nil, goldenNow)
				if err != nil {
					out["translate_"+other.Provider.Format().String()] = "error: " + err.Error()
				} else {
					out["translate_"+other.Provider.Format().String()] = indent(ob.Body)
					// the translation is itself a valid request of the other format
					if _, err := Parse(ob.endpoint, ob.Body, Limits{}); err != nil {
						t.Errorf("translated body does not parse as %s: %v", ob.endpoint, err)
					}
				}
			} else {
				out["translate_"+other.Provider.Format().String()] = "not served: " + e.String() + " needs an OpenAI-style destination"
			}
			golden(t, strings.TrimSuffix(f, ".json")+".golden", append(indent(marshal(out)), '\n'))
		})
	}
}

// TestGoldenResponses translates provider responses to the other format.
func TestGoldenResponses(t *testing.T) {
	files, _ := filepath.Glob("testdata/responses/*.json")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			body, _ := os.ReadFile(f)
			var got []byte
			var err error
			var m *meter
			if strings.HasPrefix(filepath.Base(f), "anthropic") {
				got, err = messagesRespToChat(body, goldenNow)
				m = newMeter(FormatAnthropic, Messages)
			} else {
				got, err = chatRespToMessages(body)
				m = newMeter(FormatOpenAI, ChatCompletions)
			}
			if err != nil {
				t.Fatal(err)
			}
			m.body(body)
			out := map[string]any{"translated": indent(got), "usage": m.result(0), "id": m.id, "model": m.model, "finish": m.finish}
			golden(t, strings.TrimSuffix(f, ".json")+".golden", append(indent(marshal(out)), '\n'))
		})
	}
}

// TestGoldenStreams translates provider streams event by event and meters
// them.
func TestGoldenStreams(t *testing.T) {
	files, _ := filepath.Glob("testdata/streams/*.sse")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, _ := os.ReadFile(f)
			var tr streamTranslator
			var m *meter
			if strings.HasPrefix(filepath.Base(f), "anthropic") {
				tr, m = newAnToOAStream(true, goldenNow), newMeter(FormatAnthropic, Messages)
			} else {
				tr, m = newOAToAnStream(), newMeter(FormatOpenAI, ChatCompletions)
			}
			rd := sse.NewReader(bytes.NewReader(raw), 1<<20)
			defer rd.Release()
			var out []byte
			for {
				err := rd.NextContent()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				m.event(string(rd.Name), rd.Data)
				out, err = tr.event(out, string(rd.Name), rd.Data)
				if err != nil {
					t.Fatal(err)
				}
			}
			out = tr.end(out)
			if !tr.done() {
				t.Error("translated stream not complete")
			}
			u, _ := json.MarshalIndent(map[string]any{"usage": m.result(0), "id": m.id, "model": m.model, "finish": m.finish}, "", "  ")
			golden(t, strings.TrimSuffix(f, ".sse")+".golden", append(append(out, "# metered\n"...), append(u, '\n')...))
		})
	}
}
