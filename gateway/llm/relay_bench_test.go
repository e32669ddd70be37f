package llm

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// BenchmarkStreamRelay is the gateway's own work per streamed answer,
// without the network: a 64-delta stream read from an in-memory upstream,
// metered, translated (Anthropic to an OpenAI chat client) or relayed as
// is (OpenAI to OpenAI), and written to a recorder. b.SetBytes: the
// upstream stream's size.
func BenchmarkStreamRelay(b *testing.B) {
	for _, tc := range []struct {
		name, file string
		client     Endpoint
		provider   Provider
	}{
		{"anthropic-to-openai", "testdata/streams/anthropic-tool.sse", ChatCompletions, ProviderAnthropic},
		{"openai-as-is", "testdata/streams/openai-tool.sse", ChatCompletions, ProviderOpenAI},
	} {
		b.Run(tc.name, func(b *testing.B) {
			raw, err := os.ReadFile(tc.file)
			if err != nil {
				b.Fatal(err)
			}
			// 64 more text deltas before the stream's end.
			var delta []byte
			if tc.provider == ProviderAnthropic {
				delta = []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"a token of the answer \"}}\n\n")
				i := bytes.Index(raw, []byte("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}"))
				raw = append(append(append([]byte(nil), raw[:i]...), bytes.Repeat(delta, 64)...), raw[i:]...)
			} else {
				delta = []byte("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a token of the answer \"},\"finish_reason\":null}]}\n\n")
				raw = append(bytes.Repeat(delta, 64), raw...)
			}
			req, err := Parse(tc.client, []byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`), Limits{})
			if err != nil {
				b.Fatal(err)
			}
			tr := roundTripBench(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/event-stream"}},
					Body: io.NopCloser(bytes.NewReader(raw)), ContentLength: int64(len(raw)), Request: r}, nil
			})
			fwd := &Forwarder{Client: &http.Client{Transport: tr}}
			call := &Call{Request: req, UserID: "u", Route: Route{Destinations: []Destination{{Service: "s", Provider: tc.provider,
				BaseURL: "http://upstream.invalid/v1", Model: "m", Weight: 1}}}}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				if res := fwd.Forward(b.Context(), w, call); res.Broken || res.Status != 200 {
					b.Fatalf("status %d: %v", res.Status, res.Err)
				}
			}
		})
	}
}

type roundTripBench func(*http.Request) (*http.Response, error)

func (f roundTripBench) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
