package llm

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Outbound is one attempt's upstream request, as the BeforeForward hook
// sees it: the body is already rewritten (or translated) for the
// destination. A hook may replace Body (a redacting guardrail); it must
// not keep a reference to Header, which carries the provider credential.
type Outbound struct {
	Destination *Destination
	URL         string
	Body        []byte
	Header      http.Header
	// Translated is true when the body was translated to the destination's
	// format (false on the byte-edit fast path).
	Translated bool

	format     Format           // the destination's format
	endpoint   Endpoint         // the endpoint called at the destination
	stream     streamTranslator // nil on the fast path
	translate  func([]byte) ([]byte, error)
	dropUsage  bool // drop the usage chunk the client did not ask for
	localReply []byte
}

// Headers a client may send that reach a destination of the same format;
// everything else (Authorization, x-api-key, cookies, tracing) stays here.
var passAnthropic = []string{"Anthropic-Version", "Anthropic-Beta"}
var passOpenAI = []string{"Openai-Beta"}

const anthropicVersion = "2023-06-01"

// DefaultMaxTokens is the max_tokens sent to an Anthropic destination
// when an OpenAI client set none (Anthropic requires one), and the cap
// the gateway imposes on a call without one that a token limit or budget
// applies to (Request.CapOutput).
const DefaultMaxTokens = 4096

// prepare builds the upstream request of req for destination d. userID is
// the pseudonymous id of the human; clientHeader the client's request
// headers (only the allow-listed ones pass); clientQuery the client's
// query (Anthropic's beta=true passes to Anthropic destinations).
func prepare(req *Request, d *Destination, userID string, clientHeader http.Header, clientQuery url.Values, now time.Time) (*Outbound, error) {
	cf, df := req.Endpoint.Format(), d.Provider.Format()
	out := &Outbound{Destination: d, Header: make(http.Header, 8), format: df, endpoint: req.Endpoint}
	h := out.Header
	// The gateway's own headers, each value one element of one array.
	vals := make([]string, 0, 5)
	one := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	one("Content-Type", "application/json")
	if req.Stream {
		one("Accept", "text/event-stream")
	} else {
		one("Accept", "application/json")
	}
	one("User-Agent", "mandate-gateway")
	if df == FormatAnthropic {
		if d.APIKey != "" {
			one("X-Api-Key", d.APIKey)
		}
		one("Anthropic-Version", anthropicVersion)
	} else if d.APIKey != "" {
		one("Authorization", "Bearer "+d.APIKey)
	}

	if cf == df {
		pass := passOpenAI
		if cf == FormatAnthropic {
			pass = passAnthropic
		}
		for _, k := range pass {
			if v := clientHeader.Values(k); len(v) > 0 {
				h[k] = v
			}
		}
		out.Body = rewriteBody(req, d, userID)
		out.URL = d.url(req.Endpoint)
		if cf == FormatAnthropic && clientQuery.Get("beta") == "true" {
			out.URL = addQuery(out.URL, "beta=true")
		}
		out.dropUsage = req.Endpoint == ChatCompletions && req.Stream && !req.IncludeUsage
		return out, nil
	}

	out.Translated = true
	var err error
	switch req.Endpoint {
	case ChatCompletions: // OpenAI client → Anthropic destination
		out.endpoint = Messages
		maxTokens := int64(DefaultMaxTokens)
		if req.outputCap > 0 {
			maxTokens = req.outputCap
		}
		out.Body, err = chatToMessages(req.Body, d.Model, userID, maxTokens)
		out.translate = func(b []byte) ([]byte, error) { return messagesRespToChat(b, now) }
		if req.Stream {
			out.stream = newAnToOAStream(req.IncludeUsage, now)
		}
	case Messages: // Anthropic client → OpenAI-style destination
		out.endpoint = ChatCompletions
		out.Body, err = messagesToChat(req.Body, d.Model, d.Provider, userID)
		out.translate = chatRespToMessages
		if req.Stream {
			out.stream = newOAToAnStream()
		}
	case CountTokens: // answered here: OpenAI has no counting endpoint
		out.localReply = []byte(`{"input_tokens":` + strconv.FormatInt(req.InputTokens, 10) + `}`)
		return out, nil
	default:
		return nil, InvalidRequest("model", "the "+req.Endpoint.String()+" API needs an OpenAI-style destination")
	}
	if err != nil {
		return nil, err
	}
	out.URL = d.url(out.endpoint)
	return out, nil
}

func addQuery(u, q string) string {
	for i := 0; i < len(u); i++ {
		if u[i] == '?' {
			return u + "&" + q
		}
	}
	return u + "?" + q
}

// rewriteBody is the fast path: the client's body with the model replaced
// by the destination's, usage requested for OpenAI chat streams, and the
// pseudonymous user id set, as byte-level edits of the top-level members.
func rewriteBody(req *Request, d *Destination, userID string) []byte {
	body := req.Body
	var modelV, streamOpts, metadata, safetyID, user []byte
	var haveStreamOpts, haveMetadata, haveSafety, haveUser bool
	_ = eachMember(body, func(k, v []byte) bool {
		switch {
		case keyIs(k, "model"):
			modelV = v
		case keyIs(k, "stream_options"):
			streamOpts, haveStreamOpts = v, true
		case keyIs(k, "metadata"):
			metadata, haveMetadata = v, true
		case keyIs(k, "safety_identifier"):
			safetyID, haveSafety = v, true
		case keyIs(k, "user"):
			user, haveUser = v, true
		}
		return true
	})
	top := skipWS(body, 0) + 1 // just past the top-level '{'
	var buf [5]edit
	edits := buf[:0]
	replace := func(v, repl []byte) {
		s := offsetIn(body, v)
		edits = append(edits, edit{start: s, end: s + len(v), repl: repl})
	}
	insert := func(key string, val []byte) {
		repl := make([]byte, 0, len(key)+len(val)+4)
		repl = append(repl, '"')
		repl = append(repl, key...)
		repl = append(repl, '"', ':')
		repl = append(repl, val...)
		repl = append(repl, ',')
		edits = append(edits, edit{start: top, end: top, repl: repl})
	}
	set := func(v []byte, have bool, key string, val []byte) {
		if have {
			replace(v, val)
		} else {
			insert(key, val)
		}
	}
	if modelV != nil {
		replace(modelV, quoteJSON(d.Model))
	}
	if req.outputCap > 0 { // CapOutput: the client set no cap
		n := []byte(strconv.FormatInt(req.outputCap, 10))
		switch {
		case req.Endpoint == Responses:
			insert("max_output_tokens", n)
		case req.Endpoint == ChatCompletions && d.Provider == ProviderOpenAI:
			insert("max_completion_tokens", n)
		default:
			insert("max_tokens", n)
		}
	}
	if pt := req.priced; pt != nil && pt.capped > 0 { // CapToolUses: priced per-use tools without a bound
		n := []byte(strconv.FormatInt(pt.capped, 10))
		switch req.Endpoint {
		case Responses:
			insert("max_tool_calls", n)
		case Messages:
			tools, _ := member(body, "tools")
			_ = eachElement(tools, func(t []byte) bool {
				tv, _ := member(t, "type")
				typ, _ := stringValue(tv)
				if mu, ok := member(t, "max_uses"); pricedKind(Messages, typ) != nil && (!ok || isNull(mu)) {
					edits = append(edits, setMember(t, offsetIn(body, t), "max_uses", n))
				}
				return true
			})
		}
	}
	if req.Endpoint == ChatCompletions && req.Stream && !req.IncludeUsage {
		if haveStreamOpts && kindOf(streamOpts) == '{' {
			edits = append(edits, setMember(streamOpts, offsetIn(body, streamOpts), "include_usage", []byte("true")))
		} else {
			set(streamOpts, haveStreamOpts, "stream_options", []byte(`{"include_usage":true}`))
		}
	}
	if userID != "" {
		q := quoteJSON(userID)
		switch req.Endpoint {
		case Messages:
			if haveMetadata && kindOf(metadata) == '{' {
				edits = append(edits, setMember(metadata, offsetIn(body, metadata), "user_id", q))
			} else {
				set(metadata, haveMetadata, "metadata", append(append([]byte(`{"user_id":`), q...), '}'))
			}
		case ChatCompletions, Responses:
			if d.Provider == ProviderOpenAI {
				set(safetyID, haveSafety, "safety_identifier", q)
				if haveUser {
					replace(user, q)
				}
			} else {
				set(user, haveUser, "user", q)
			}
		case Embeddings:
			set(user, haveUser, "user", q)
		}
	}
	return applyEdits(body, edits)
}
