// Command fakellm runs the fake OpenAI and Anthropic API of package llmtest
// for manual tests:
//
//	go run ./gateway/llm/llmtest/fakellm -addr 127.0.0.1:8471
//	curl -s localhost:8471/v1/chat/completions -d '{"model":"m","messages":[{"role":"user","content":"hi mock:out=64"}]}'
//
// Directives in the prompt (mock:status=429, mock:slow=1s, mock:break,
// mock:tool, ...) are listed in llmtest.Directives.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8471", "listen address")
	openaiKey := flag.String("openai-key", "", "API key the OpenAI endpoints demand (none if empty)")
	anthropicKey := flag.String("anthropic-key", "", "API key the Anthropic endpoints demand (none if empty)")
	flag.Parse()
	s := llmtest.New()
	s.OpenAIKey, s.AnthropicKey = *openaiKey, *anthropicKey
	s.MaxRecorded = -1
	fmt.Fprintf(os.Stderr, "fakellm: serving OpenAI and Anthropic APIs on http://%s/v1\n", *addr)
	srv := &http.Server{Addr: *addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "fakellm:", err)
		os.Exit(1)
	}
}
