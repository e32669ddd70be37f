package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	sjson "github.com/segmentio/encoding/json"
)

// Translation between OpenAI chat completions and Anthropic messages. The
// request was validated by Parse (so it is valid JSON without case-folded
// duplicate keys); it is decoded case-sensitively into the structs below,
// so that a member the parser did not see ("Tools") cannot reach the
// upstream through the translation either. What has no counterpart is
// dropped when harmless (sampling knobs, cache_control, thinking) and
// refused with a 400 when dropping it would change the answer (n > 1,
// audio input, non-function tools).

// decodeStrict decodes JSON into v, matching struct fields by their exact
// names.
func decodeStrict(b []byte, v any) error {
	_, err := sjson.Parse(b, v, sjson.DontMatchCaseInsensitiveStructFields)
	return err
}

// marshal encodes v without HTML escaping.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// ---- OpenAI chat completions shapes ----

type oaChatRequest struct {
	Model               string           `json:"model"`
	Messages            []oaMessage      `json:"messages"`
	MaxTokens           *int64           `json:"max_tokens"`
	MaxCompletionTokens *int64           `json:"max_completion_tokens"`
	Temperature         *float64         `json:"temperature"`
	TopP                *float64         `json:"top_p"`
	Stop                json.RawMessage  `json:"stop"`
	Stream              bool             `json:"stream"`
	Tools               []oaTool         `json:"tools"`
	ToolChoice          json.RawMessage  `json:"tool_choice"`
	ParallelToolCalls   *bool            `json:"parallel_tool_calls"`
	ResponseFormat      *oaResponseFmt   `json:"response_format"`
	N                   *int64           `json:"n"`
	User                string           `json:"user"`
	SafetyIdentifier    string           `json:"safety_identifier"`
	Modalities          []string         `json:"modalities"`
	Audio               *json.RawMessage `json:"audio"`
}

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []oaToolCall    `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	Refusal    *string         `json:"refusal"`
}

type oaPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Refusal  string `json:"refusal"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
	File *struct {
		FileData string `json:"file_data"`
		FileID   string `json:"file_id"`
		Filename string `json:"filename"`
	} `json:"file"`
}

type oaToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type oaResponseFmt struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema"`
}

// ---- Anthropic messages shapes ----

type anRequest struct {
	Model         string          `json:"model"`
	System        json.RawMessage `json:"system,omitempty"`
	Messages      []anMessage     `json:"messages"`
	MaxTokens     int64           `json:"max_tokens,omitempty"`
	Metadata      *anMetadata     `json:"metadata,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	Tools         []anTool        `json:"tools,omitempty"`
	ToolChoice    *anToolChoice   `json:"tool_choice,omitempty"`
	OutputConfig  *anOutputConfig `json:"output_config,omitempty"`
}

type anMetadata struct {
	UserID string `json:"user_id,omitempty"`
}

type anMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anBlock struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text,omitempty"`
	Source    *anSource       `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
	Title     string          `json:"title,omitempty"`
}

type anSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anTool struct {
	Type        string          `json:"type,omitempty"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

type anToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anOutputConfig struct {
	Format *struct {
		Type   string          `json:"type"`
		Schema json.RawMessage `json:"schema,omitempty"`
	} `json:"format,omitempty"`
}

type anUsage struct {
	InputTokens              int64              `json:"input_tokens"`
	OutputTokens             int64              `json:"output_tokens"`
	CacheCreationInputTokens int64              `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64              `json:"cache_read_input_tokens"`
	OutputTokensDetails      *anOutputTokenKind `json:"output_tokens_details,omitempty"`
}

type anOutputTokenKind struct {
	ThinkingTokens int64 `json:"thinking_tokens"`
}

type anResponse struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []anBlock       `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        json.RawMessage `json:"usage"`
}

func str(s string) *string { return &s }

// ---- OpenAI chat request → Anthropic messages request ----

// chatToMessages translates an OpenAI chat completions request for an
// Anthropic destination. maxTokens is used when the client set none
// (Anthropic requires it).
func chatToMessages(body []byte, model, userID string, defaultMaxTokens int64) ([]byte, error) {
	var in oaChatRequest
	if err := decodeStrict(body, &in); err != nil {
		return nil, InvalidRequest("", "invalid request: "+err.Error())
	}
	if in.N != nil && *in.N > 1 {
		return nil, InvalidRequest("n", "n > 1 is not supported by this model service's destination")
	}
	if in.Audio != nil && string(*in.Audio) != "null" {
		return nil, InvalidRequest("audio", "audio output is not supported by this model service's destination")
	}
	out := anRequest{Model: model, Stream: in.Stream, TopP: in.TopP}
	switch {
	case in.MaxCompletionTokens != nil && *in.MaxCompletionTokens > 0:
		out.MaxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil && *in.MaxTokens > 0:
		out.MaxTokens = *in.MaxTokens
	default:
		out.MaxTokens = defaultMaxTokens
	}
	if in.Temperature != nil {
		t := min(*in.Temperature, 1) // Anthropic's range is 0..1, OpenAI's 0..2
		out.Temperature = &t
	}
	if len(in.Stop) > 0 && string(in.Stop) != "null" {
		var one string
		if err := decodeStrict(in.Stop, &one); err == nil {
			out.StopSequences = []string{one}
		} else if err := decodeStrict(in.Stop, &out.StopSequences); err != nil {
			return nil, InvalidRequest("stop", "stop must be a string or an array of strings")
		}
	}
	var system []anBlock
	for i, m := range in.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer":
			texts, err := oaTexts(m.Content, param)
			if err != nil {
				return nil, err
			}
			for _, t := range texts {
				system = append(system, anBlock{Type: "text", Text: str(t)})
			}
		case "user":
			blocks, err := oaUserBlocks(m.Content, param)
			if err != nil {
				return nil, err
			}
			out.Messages = appendAnMessage(out.Messages, "user", blocks)
		case "assistant":
			var blocks []anBlock
			texts, err := oaTexts(m.Content, param)
			if err != nil {
				return nil, err
			}
			for _, t := range texts {
				blocks = append(blocks, anBlock{Type: "text", Text: str(t)})
			}
			if m.Refusal != nil && *m.Refusal != "" {
				blocks = append(blocks, anBlock{Type: "text", Text: m.Refusal})
			}
			for j, tc := range m.ToolCalls {
				input := json.RawMessage(strings.TrimSpace(tc.Function.Arguments))
				if len(input) == 0 {
					input = json.RawMessage("{}")
				}
				if !json.Valid(input) || input[0] != '{' {
					return nil, InvalidRequest(fmt.Sprintf("%s.tool_calls[%d].function.arguments", param, j), "tool call arguments must be a JSON object")
				}
				blocks = append(blocks, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
			if len(blocks) > 0 {
				out.Messages = appendAnMessage(out.Messages, "assistant", blocks)
			}
		case "tool":
			texts, err := oaTexts(m.Content, param)
			if err != nil {
				return nil, err
			}
			content := marshal(strings.Join(texts, "\n"))
			out.Messages = appendAnMessage(out.Messages, "user", []anBlock{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: content}})
		default:
			return nil, InvalidRequest(param+".role", fmt.Sprintf("role %q is not supported by this model service's destination", m.Role))
		}
	}
	if len(out.Messages) == 0 {
		return nil, InvalidRequest("messages", "messages must hold at least one user or assistant message")
	}
	if len(system) > 0 {
		out.System = marshal(system)
	}
	for i, t := range in.Tools {
		if t.Type != "function" || t.Function == nil {
			return nil, InvalidRequest(fmt.Sprintf("tools[%d].type", i), fmt.Sprintf("tool type %q is not supported by this model service's destination", t.Type))
		}
		schema := t.Function.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, anTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if len(out.Tools) > 0 {
		tc, err := oaToolChoiceToAn(in.ToolChoice)
		if err != nil {
			return nil, err
		}
		if in.ParallelToolCalls != nil && !*in.ParallelToolCalls {
			if tc == nil {
				tc = &anToolChoice{Type: "auto"}
			}
			if tc.Type != "none" {
				tc.DisableParallelToolUse = true
			}
		}
		out.ToolChoice = tc
	}
	if rf := in.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_schema":
			if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
				return nil, InvalidRequest("response_format.json_schema", "response_format.json_schema.schema is required")
			}
			out.OutputConfig = &anOutputConfig{}
			out.OutputConfig.Format = &struct {
				Type   string          `json:"type"`
				Schema json.RawMessage `json:"schema,omitempty"`
			}{Type: "json_schema", Schema: rf.JSONSchema.Schema}
		case "json_object":
			out.OutputConfig = &anOutputConfig{}
			out.OutputConfig.Format = &struct {
				Type   string          `json:"type"`
				Schema json.RawMessage `json:"schema,omitempty"`
			}{Type: "json_schema", Schema: json.RawMessage(`{"type":"object","additionalProperties":true}`)}
		}
	}
	if userID == "" {
		userID = in.SafetyIdentifier
		if userID == "" {
			userID = in.User
		}
	}
	if userID != "" {
		out.Metadata = &anMetadata{UserID: userID}
	}
	return marshal(out), nil
}

// appendAnMessage appends blocks as a message of role, merging with the
// previous message when it has the same role (Anthropic wants the tool
// results of one turn in one user message).
func appendAnMessage(msgs []anMessage, role string, blocks []anBlock) []anMessage {
	if len(blocks) == 0 {
		return msgs
	}
	if n := len(msgs); n > 0 && msgs[n-1].Role == role {
		var prev []anBlock
		_ = decodeStrict(msgs[n-1].Content, &prev)
		msgs[n-1].Content = marshal(append(prev, blocks...))
		return msgs
	}
	return append(msgs, anMessage{Role: role, Content: marshal(blocks)})
}

// oaTexts returns the texts of an OpenAI content (string, parts or null).
func oaTexts(content json.RawMessage, param string) ([]string, error) {
	switch kindOf(content) {
	case 0, 'n':
		return nil, nil
	case '"':
		var s string
		_ = decodeStrict(content, &s)
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	}
	var parts []oaPart
	if err := decodeStrict(content, &parts); err != nil {
		return nil, InvalidRequest(param+".content", "invalid content")
	}
	var out []string
	for i, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, p.Text)
			}
		case "refusal":
			if p.Refusal != "" {
				out = append(out, p.Refusal)
			}
		default:
			return nil, InvalidRequest(fmt.Sprintf("%s.content[%d].type", param, i), fmt.Sprintf("content part %q is not supported here by this model service's destination", p.Type))
		}
	}
	return out, nil
}

// oaUserBlocks converts a user message's content to Anthropic blocks.
func oaUserBlocks(content json.RawMessage, param string) ([]anBlock, error) {
	switch kindOf(content) {
	case 0, 'n':
		return nil, nil
	case '"':
		var s string
		_ = decodeStrict(content, &s)
		if s == "" {
			return nil, nil // Anthropic refuses empty text blocks
		}
		return []anBlock{{Type: "text", Text: str(s)}}, nil
	}
	var parts []oaPart
	if err := decodeStrict(content, &parts); err != nil {
		return nil, InvalidRequest(param+".content", "invalid content")
	}
	var out []anBlock
	for i, p := range parts {
		pp := fmt.Sprintf("%s.content[%d]", param, i)
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, anBlock{Type: "text", Text: str(p.Text)})
			}
		case "image_url":
			if p.ImageURL == nil {
				return nil, InvalidRequest(pp+".image_url", "image_url is required")
			}
			src, err := sourceFromURL(p.ImageURL.URL, pp+".image_url.url")
			if err != nil {
				return nil, err
			}
			out = append(out, anBlock{Type: "image", Source: src})
		case "file":
			if p.File == nil || p.File.FileData == "" {
				return nil, InvalidRequest(pp+".file", "only inline files (file_data) can be sent to this model service's destination")
			}
			src, err := sourceFromURL(p.File.FileData, pp+".file.file_data")
			if err != nil {
				return nil, err
			}
			out = append(out, anBlock{Type: "document", Source: src, Title: p.File.Filename})
		default:
			return nil, InvalidRequest(pp+".type", fmt.Sprintf("content part %q is not supported by this model service's destination", p.Type))
		}
	}
	return out, nil
}

// sourceFromURL maps a data: URL to a base64 source and an http(s) URL to
// a url source.
func sourceFromURL(u, param string) (*anSource, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, found := strings.Cut(rest, ",")
		mt, enc, _ := strings.Cut(meta, ";")
		if !found || enc != "base64" || mt == "" {
			return nil, InvalidRequest(param, "a data URL must be data:<media type>;base64,<data>")
		}
		return &anSource{Type: "base64", MediaType: mt, Data: data}, nil
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return &anSource{Type: "url", URL: u}, nil
	}
	return nil, InvalidRequest(param, "the URL must be a data: or http(s) URL")
}

func oaToolChoiceToAn(raw json.RawMessage) (*anToolChoice, error) {
	switch kindOf(raw) {
	case 0, 'n':
		return nil, nil
	case '"':
		var s string
		_ = decodeStrict(raw, &s)
		switch s {
		case "auto":
			return &anToolChoice{Type: "auto"}, nil
		case "none":
			return &anToolChoice{Type: "none"}, nil
		case "required":
			return &anToolChoice{Type: "any"}, nil
		}
		return nil, InvalidRequest("tool_choice", fmt.Sprintf("unknown tool_choice %q", s))
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := decodeStrict(raw, &obj); err != nil {
		return nil, InvalidRequest("tool_choice", "invalid tool_choice")
	}
	if obj.Type == "function" && obj.Function.Name != "" {
		return &anToolChoice{Type: "tool", Name: obj.Function.Name}, nil
	}
	if obj.Type == "allowed_tools" {
		return &anToolChoice{Type: "auto"}, nil
	}
	return nil, InvalidRequest("tool_choice", fmt.Sprintf("tool_choice type %q is not supported by this model service's destination", obj.Type))
}

// ---- Anthropic messages request → OpenAI chat request ----

type oaOutRequest struct {
	Model               string          `json:"model"`
	Messages            []oaOutMessage  `json:"messages"`
	MaxTokens           int64           `json:"max_tokens,omitempty"`
	MaxCompletionTokens int64           `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	Stop                []string        `json:"stop,omitempty"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *oaStreamOpts   `json:"stream_options,omitempty"`
	Tools               []oaOutTool     `json:"tools,omitempty"`
	ToolChoice          any             `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	SafetyIdentifier    string          `json:"safety_identifier,omitempty"`
	User                string          `json:"user,omitempty"`
}

type oaStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type oaOutMessage struct {
	Role       string       `json:"role"`
	Content    any          `json:"content"`
	ToolCalls  []oaToolCall `json:"tool_calls,omitempty"`
	ToolCallID string       `json:"tool_call_id,omitempty"`
}

type oaOutPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url,omitempty"`
	File *oaOutFile `json:"file,omitempty"`
}

type oaOutFile struct {
	Filename string `json:"filename,omitempty"`
	FileData string `json:"file_data"`
}

type oaOutTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters,omitempty"`
	} `json:"function"`
}

// openAIMaxStop is OpenAI's limit on stop sequences.
const openAIMaxStop = 4

// messagesToChat translates an Anthropic messages request for an
// OpenAI-style destination of provider p.
func messagesToChat(body []byte, model string, p Provider, userID string) ([]byte, error) {
	var in anRequest
	if err := decodeStrict(body, &in); err != nil {
		return nil, InvalidRequest("", "invalid request: "+err.Error())
	}
	out := oaOutRequest{Model: model, Stream: in.Stream, Temperature: in.Temperature, TopP: in.TopP}
	if p == ProviderOpenAI {
		out.MaxCompletionTokens = in.MaxTokens
	} else {
		out.MaxTokens = in.MaxTokens
	}
	if in.Stream {
		out.StreamOptions = &oaStreamOpts{IncludeUsage: true}
	}
	if len(in.StopSequences) > openAIMaxStop && p == ProviderOpenAI {
		return nil, InvalidRequest("stop_sequences", fmt.Sprintf("this model service's destination takes at most %d stop sequences", openAIMaxStop))
	}
	out.Stop = in.StopSequences
	// system
	switch kindOf(in.System) {
	case '"':
		var s string
		_ = decodeStrict(in.System, &s)
		if s != "" {
			out.Messages = append(out.Messages, oaOutMessage{Role: "system", Content: s})
		}
	case '[':
		var blocks []anBlock
		if err := decodeStrict(in.System, &blocks); err != nil {
			return nil, InvalidRequest("system", "invalid system blocks")
		}
		var texts []string
		for _, b := range blocks {
			if b.Type == "text" && b.Text != nil && *b.Text != "" {
				texts = append(texts, *b.Text)
			}
		}
		if len(texts) > 0 {
			out.Messages = append(out.Messages, oaOutMessage{Role: "system", Content: strings.Join(texts, "\n\n")})
		}
	}
	for i, m := range in.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		if kindOf(m.Content) == '"' {
			var s string
			_ = decodeStrict(m.Content, &s)
			out.Messages = append(out.Messages, oaOutMessage{Role: m.Role, Content: s})
			continue
		}
		var blocks []anBlock
		if err := decodeStrict(m.Content, &blocks); err != nil {
			return nil, InvalidRequest(param+".content", "invalid content blocks")
		}
		if m.Role == "system" {
			var texts []string
			for _, b := range blocks {
				if b.Type == "text" && b.Text != nil && *b.Text != "" {
					texts = append(texts, *b.Text)
				}
			}
			if len(texts) > 0 {
				out.Messages = append(out.Messages, oaOutMessage{Role: "system", Content: strings.Join(texts, "\n\n")})
			}
			continue
		}
		if m.Role == "assistant" {
			msg := oaOutMessage{Role: "assistant"}
			var text []string
			for _, b := range blocks {
				switch b.Type {
				case "text":
					if b.Text != nil && *b.Text != "" {
						text = append(text, *b.Text)
					}
				case "tool_use":
					input := b.Input
					if len(input) == 0 {
						input = json.RawMessage("{}")
					}
					tc := oaToolCall{ID: b.ID, Type: "function"}
					tc.Function.Name = b.Name
					tc.Function.Arguments = string(compactJSON(input))
					msg.ToolCalls = append(msg.ToolCalls, tc)
				}
				// thinking, redacted_thinking and server tool blocks have
				// no OpenAI counterpart in a request: dropped.
			}
			if len(text) > 0 {
				msg.Content = strings.Join(text, "")
			}
			if msg.Content == nil && len(msg.ToolCalls) == 0 {
				continue
			}
			out.Messages = append(out.Messages, msg)
			continue
		}
		// user: tool results first (each a tool message), then the rest
		var parts []oaOutPart
		for j, b := range blocks {
			bp := fmt.Sprintf("%s.content[%d]", param, j)
			switch b.Type {
			case "tool_result":
				text, images, err := anToolResultContent(b.Content, bp)
				if err != nil {
					return nil, err
				}
				if b.IsError && text != "" {
					text = "Error: " + text
				}
				out.Messages = append(out.Messages, oaOutMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: text})
				parts = append(parts, images...)
			case "text":
				if b.Text != nil && *b.Text != "" {
					parts = append(parts, oaOutPart{Type: "text", Text: *b.Text})
				}
			case "image", "document":
				part, err := anSourcePart(b, bp)
				if err != nil {
					return nil, err
				}
				parts = append(parts, part)
			default:
				return nil, InvalidRequest(bp+".type", fmt.Sprintf("content block %q is not supported by this model service's destination", b.Type))
			}
		}
		if len(parts) > 0 {
			out.Messages = append(out.Messages, oaOutMessage{Role: "user", Content: parts})
		}
	}
	for _, t := range in.Tools {
		if t.Type != "" && t.Type != "custom" {
			continue // server tools (web search, code execution, ...) run at Anthropic only
		}
		var ot oaOutTool
		ot.Type = "function"
		ot.Function.Name, ot.Function.Description, ot.Function.Parameters = t.Name, t.Description, t.InputSchema
		out.Tools = append(out.Tools, ot)
	}
	if tc := in.ToolChoice; tc != nil && len(out.Tools) > 0 {
		switch tc.Type {
		case "auto":
			out.ToolChoice = "auto"
		case "any":
			out.ToolChoice = "required"
		case "none":
			out.ToolChoice = "none"
		case "tool":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
		}
		if tc.DisableParallelToolUse {
			f := false
			out.ParallelToolCalls = &f
		}
	}
	if oc := in.OutputConfig; oc != nil && oc.Format != nil && len(oc.Format.Schema) > 0 {
		out.ResponseFormat = marshal(map[string]any{
			"type":        "json_schema",
			"json_schema": map[string]any{"name": "response", "schema": oc.Format.Schema},
		})
	}
	if userID == "" && in.Metadata != nil {
		userID = in.Metadata.UserID
	}
	if userID != "" {
		if p == ProviderOpenAI {
			out.SafetyIdentifier = userID
		} else {
			out.User = userID
		}
	}
	return marshal(out), nil
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// anToolResultContent flattens a tool_result's content to text; images in
// it become user-message parts (OpenAI tool messages carry text only).
func anToolResultContent(c json.RawMessage, param string) (string, []oaOutPart, error) {
	switch kindOf(c) {
	case 0, 'n':
		return "", nil, nil
	case '"':
		var s string
		_ = decodeStrict(c, &s)
		return s, nil, nil
	}
	var blocks []anBlock
	if err := decodeStrict(c, &blocks); err != nil {
		return "", nil, InvalidRequest(param+".content", "invalid tool_result content")
	}
	var text []string
	var parts []oaOutPart
	for _, b := range blocks {
		switch b.Type {
		case "text":
			if b.Text != nil {
				text = append(text, *b.Text)
			}
		case "image", "document":
			p, err := anSourcePart(b, param)
			if err != nil {
				return "", nil, err
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(text, "\n"), parts, nil
}

func anSourcePart(b anBlock, param string) (oaOutPart, error) {
	if b.Source == nil {
		return oaOutPart{}, InvalidRequest(param+".source", "source is required")
	}
	s := b.Source
	switch {
	case s.Type == "text":
		return oaOutPart{Type: "text", Text: s.Data}, nil
	case b.Type == "image" && s.Type == "base64":
		return oaOutPart{Type: "image_url", ImageURL: &struct {
			URL string `json:"url"`
		}{URL: "data:" + s.MediaType + ";base64," + s.Data}}, nil
	case b.Type == "image" && s.Type == "url":
		return oaOutPart{Type: "image_url", ImageURL: &struct {
			URL string `json:"url"`
		}{URL: s.URL}}, nil
	case b.Type == "document" && s.Type == "base64":
		name := b.Title
		if name == "" {
			name = "document.pdf"
		}
		return oaOutPart{Type: "file", File: &oaOutFile{Filename: name, FileData: "data:" + s.MediaType + ";base64," + s.Data}}, nil
	}
	return oaOutPart{}, InvalidRequest(param+".source.type", fmt.Sprintf("%s source %q is not supported by this model service's destination", b.Type, s.Type))
}

// ---- responses ----

var anStopToOA = map[string]string{
	"end_turn":                      "stop",
	"stop_sequence":                 "stop",
	"pause_turn":                    "stop",
	"max_tokens":                    "length",
	"model_context_window_exceeded": "length",
	"tool_use":                      "tool_calls",
	"refusal":                       "content_filter",
}

var oaStopToAn = map[string]string{
	"stop":           "end_turn",
	"length":         "max_tokens",
	"tool_calls":     "tool_use",
	"function_call":  "tool_use",
	"content_filter": "refusal",
}

func mapStop(m map[string]string, s, dflt string) string {
	if v, ok := m[s]; ok {
		return v
	}
	return dflt
}

type oaUsageOut struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens     int64 `json:"cached_tokens"`
		CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func oaUsageFrom(u Usage) *oaUsageOut {
	o := &oaUsageOut{PromptTokens: u.InputTokens, CompletionTokens: u.OutputTokens, TotalTokens: u.InputTokens + u.OutputTokens}
	o.PromptTokensDetails.CachedTokens = u.CachedInputTokens
	o.PromptTokensDetails.CacheWriteTokens = u.CacheWriteTokens
	o.CompletionTokensDetails.ReasoningTokens = u.ReasoningTokens
	return o
}

func anUsageFrom(u Usage) anUsage {
	out := anUsage{
		InputTokens:              u.UncachedInputTokens(),
		OutputTokens:             u.OutputTokens,
		CacheReadInputTokens:     u.CachedInputTokens,
		CacheCreationInputTokens: u.CacheWriteTokens,
	}
	if u.ReasoningTokens > 0 {
		out.OutputTokensDetails = &anOutputTokenKind{ThinkingTokens: u.ReasoningTokens}
	}
	return out
}

type oaChoiceOut struct {
	Index        int          `json:"index"`
	Message      oaMessageOut `json:"message"`
	FinishReason string       `json:"finish_reason"`
	Logprobs     *struct{}    `json:"logprobs"`
}

type oaMessageOut struct {
	Role      string       `json:"role"`
	Content   *string      `json:"content"`
	Refusal   *string      `json:"refusal"`
	ToolCalls []oaToolCall `json:"tool_calls,omitempty"`
}

type oaChatResponseOut struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []oaChoiceOut `json:"choices"`
	Usage   *oaUsageOut   `json:"usage"`
}

// messagesRespToChat translates an Anthropic message (response) to an
// OpenAI chat completion.
func messagesRespToChat(body []byte, now time.Time) ([]byte, error) {
	var in anResponse
	if err := decodeStrict(body, &in); err != nil {
		return nil, err
	}
	msg := oaMessageOut{Role: "assistant"}
	var text strings.Builder
	for _, b := range in.Content {
		switch b.Type {
		case "text":
			if b.Text != nil {
				text.WriteString(*b.Text)
			}
		case "tool_use":
			input := b.Input
			if len(input) == 0 {
				input = json.RawMessage("{}")
			}
			tc := oaToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = b.Name, string(compactJSON(input))
			msg.ToolCalls = append(msg.ToolCalls, tc)
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		msg.Content = str(text.String())
	}
	stop := ""
	if in.StopReason != nil {
		stop = *in.StopReason
	}
	var u Usage
	if kindOf(in.Usage) == '{' {
		u = usageAnthropic(in.Usage)
	}
	out := oaChatResponseOut{
		ID: in.ID, Object: "chat.completion", Created: now.Unix(), Model: in.Model,
		Choices: []oaChoiceOut{{Message: msg, FinishReason: mapStop(anStopToOA, stop, "stop")}},
		Usage:   oaUsageFrom(u),
	}
	return marshal(out), nil
}

type oaChatResponseIn struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   *string      `json:"content"`
			Refusal   *string      `json:"refusal"`
			ToolCalls []oaToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

type anResponseOut struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Role         string    `json:"role"`
	Model        string    `json:"model"`
	Content      []anBlock `json:"content"`
	StopReason   string    `json:"stop_reason"`
	StopSequence *string   `json:"stop_sequence"`
	Usage        anUsage   `json:"usage"`
}

// chatRespToMessages translates an OpenAI chat completion to an Anthropic
// message.
func chatRespToMessages(body []byte) ([]byte, error) {
	var in oaChatResponseIn
	if err := decodeStrict(body, &in); err != nil {
		return nil, err
	}
	out := anResponseOut{ID: in.ID, Type: "message", Role: "assistant", Model: in.Model, Content: []anBlock{}, StopReason: "end_turn"}
	if len(in.Choices) > 0 {
		c := in.Choices[0]
		if c.Message.Content != nil && *c.Message.Content != "" {
			out.Content = append(out.Content, anBlock{Type: "text", Text: c.Message.Content})
		}
		if c.Message.Refusal != nil && *c.Message.Refusal != "" {
			out.Content = append(out.Content, anBlock{Type: "text", Text: c.Message.Refusal})
		}
		for _, tc := range c.Message.ToolCalls {
			out.Content = append(out.Content, anBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: toolInput(tc.Function.Arguments)})
		}
		out.StopReason = mapStop(oaStopToAn, c.FinishReason, "end_turn")
	}
	var u Usage
	if len(in.Usage) > 0 && kindOf(in.Usage) == '{' {
		u = usageOpenAI(in.Usage)
	}
	out.Usage = anUsageFrom(u)
	return marshal(out), nil
}

// toolInput is a tool call's arguments as an Anthropic input object; text
// that is not a JSON object is kept under "arguments" rather than lost.
func toolInput(args string) json.RawMessage {
	b := bytes.TrimSpace([]byte(args))
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	if json.Valid(b) && b[0] == '{' {
		return compactJSON(b)
	}
	return marshal(map[string]string{"arguments": args})
}

// upstreamErrorMessage extracts the message of a provider error body in
// either format ("" if none).
func upstreamErrorMessage(body []byte) string {
	e, ok := member(body, "error")
	if !ok {
		return ""
	}
	if m, ok := member(e, "message"); ok {
		s, _ := stringValue(m)
		return s
	}
	s, _ := stringValue(e)
	return s
}
