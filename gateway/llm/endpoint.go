package llm

import (
	"net/http"
	"strings"
)

// Format is a wire format family: how bodies, streams and errors look.
type Format uint8

const (
	FormatOpenAI Format = iota + 1
	FormatAnthropic
)

func (f Format) String() string {
	switch f {
	case FormatOpenAI:
		return "openai"
	case FormatAnthropic:
		return "anthropic"
	}
	return "unknown"
}

// Endpoint is one client-facing operation.
type Endpoint uint8

const (
	ChatCompletions Endpoint = iota + 1 // OpenAI POST /v1/chat/completions
	Responses                           // OpenAI POST /v1/responses
	Embeddings                          // OpenAI POST /v1/embeddings
	Models                              // OpenAI (or Anthropic) GET /v1/models
	Messages                            // Anthropic POST /v1/messages
	CountTokens                         // Anthropic POST /v1/messages/count_tokens
)

var endpointPaths = [...]string{
	ChatCompletions: "/chat/completions",
	Responses:       "/responses",
	Embeddings:      "/embeddings",
	Models:          "/models",
	Messages:        "/messages",
	CountTokens:     "/messages/count_tokens",
}

var endpointNames = [...]string{
	ChatCompletions: "chat.completions",
	Responses:       "responses",
	Embeddings:      "embeddings",
	Models:          "models",
	Messages:        "messages",
	CountTokens:     "messages.count_tokens",
}

// String is the endpoint's name for audit and metrics (chat.completions,
// responses, embeddings, models, messages, messages.count_tokens).
func (e Endpoint) String() string {
	if int(e) < len(endpointNames) && e > 0 {
		return endpointNames[e]
	}
	return "unknown"
}

// Path is the endpoint's path below the API's /v1 (for example
// "/chat/completions").
func (e Endpoint) Path() string {
	if int(e) < len(endpointPaths) && e > 0 {
		return endpointPaths[e]
	}
	return ""
}

// Format is the format the client speaks on e.
func (e Endpoint) Format() Format {
	switch e {
	case Messages, CountTokens:
		return FormatAnthropic
	}
	return FormatOpenAI
}

// Method is the HTTP method of e.
func (e Endpoint) Method() string {
	if e == Models {
		return http.MethodGet
	}
	return http.MethodPost
}

// EndpointFor maps a request path to its endpoint. path is what follows
// the API's version prefix or the whole path ending in it: "/v1/messages",
// "/llm/v1/chat/completions" and "/chat/completions" all resolve. A
// query string is not part of path.
func EndpointFor(path string) (Endpoint, bool) {
	if i := strings.LastIndex(path, "/v1/"); i >= 0 {
		path = path[i+3:]
	}
	path = strings.TrimSuffix(path, "/")
	for e := ChatCompletions; e <= CountTokens; e++ {
		if path == endpointPaths[e] {
			return e, true
		}
	}
	return 0, false
}

// Provider is a model provider service's kind: how Mandate talks to it.
type Provider string

const (
	ProviderOpenAI           Provider = "openai"
	ProviderAnthropic        Provider = "anthropic"
	ProviderOpenAICompatible Provider = "openai_compatible"
)

// Valid reports whether p is a known provider.
func (p Provider) Valid() bool {
	return p == ProviderOpenAI || p == ProviderAnthropic || p == ProviderOpenAICompatible
}

// Format is the wire format the provider speaks.
func (p Provider) Format() Format {
	if p == ProviderAnthropic {
		return FormatAnthropic
	}
	return FormatOpenAI
}

// Serves reports whether a destination of provider p can answer endpoint e
// (directly or by translation). Responses and embeddings need an
// OpenAI-style destination; Models is answered by the gateway itself.
func (p Provider) Serves(e Endpoint) bool {
	switch e {
	case ChatCompletions, Messages, CountTokens:
		return p.Valid()
	case Responses, Embeddings:
		return p == ProviderOpenAI || p == ProviderOpenAICompatible
	}
	return false
}

// Destination is one place a model service routes to: a model at a model
// provider service. Secrets are decrypted; never log them.
type Destination struct {
	// Service is the provider service's name (for audit and routing
	// records), for example system.ai.openai_prod.
	Service  string
	Provider Provider
	// BaseURL is the provider's API base: https://api.openai.com/v1,
	// https://api.anthropic.com (or .../v1), http://127.0.0.1:11434/v1.
	// Endpoint paths are appended; a query string is kept.
	BaseURL string
	// Model is the provider's model name (gpt-4.1, claude-sonnet-4-5).
	Model string
	// APIKey is the provider credential: sent as Authorization: Bearer
	// (OpenAI-style) or x-api-key (Anthropic). Empty sends none (local
	// servers).
	APIKey string `json:"-"`
	// Weight is the destination's share of the traffic split (of the sum
	// of the weights); fallbacks ignore it.
	Weight int
}

// String is service/model, as model service options spell destinations.
func (d *Destination) String() string { return d.Service + "/" + d.Model }

// url is the upstream URL of endpoint e at d.
func (d *Destination) url(e Endpoint) string {
	base, query := d.BaseURL, ""
	if i := strings.IndexByte(base, '?'); i >= 0 {
		base, query = base[:i], base[i:]
	}
	base = strings.TrimSuffix(base, "/")
	if d.Provider == ProviderAnthropic && !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	return base + e.Path() + query
}
