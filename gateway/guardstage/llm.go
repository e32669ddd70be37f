package guardstage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
	"github.com/mandatehq/mandate/gateway/guard/schema"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// LLM payloads are in the client's format (OpenAI chat completions and
// Responses, Anthropic messages; gateway/llm finds their parts). On the
// call: every text of the request (system prompts, messages, tool calls
// the model made before, tool results) for detect_sensitive_data;
// tool results, and with user_content 'true' the user's and system's
// texts, for block_prompt_injection; the trifecta for the model service.
// On the result: the answer's texts and tool calls (masking and restoring
// placeholders; destinations in links, markdown images and tool call
// arguments; the response_format schema; Rego). A streamed answer is
// read delta by delta: each stream (a choice, a content block) keeps a
// hold-back of what could still become (part of) an entity or a link, so
// a value split across events is still found; held text is released with
// a later delta, or in an event made from the stream's last delta just
// before the event that ends it.

// llmFormatPrefix starts the pipeline.Content formats of the LLM
// endpoint ("llm/chat.completions", "llm/messages", …).
const llmFormatPrefix = "llm/"

var llmEndpoints = []llm.Endpoint{llm.ChatCompletions, llm.Responses, llm.Embeddings, llm.Messages, llm.CountTokens, llm.Models}

func endpointOf(format string) (llm.Endpoint, error) {
	name := strings.TrimPrefix(format, llmFormatPrefix)
	for _, e := range llmEndpoints {
		if e.String() == name {
			return e, nil
		}
	}
	return 0, fmt.Errorf("guardrails cannot read %q payloads", format)
}

// maxAnswer bounds the answer text kept for checks at the end of a stream
// (schema, Rego); a longer answer fails those checks (closed).
const maxAnswer = 4 << 20

// llmState is the state of an LLM call's answer.
type llmState struct {
	ep      llm.Endpoint
	schema  []byte // the request's response_format schema
	streams map[string]*llmStream
	order   []string
	first   string // the first text stream (the answer)
	answer  []byte // its released text
	long    bool   // answer passed maxAnswer
	ended   bool   // the end-of-stream checks ran
}

// llmStream is one stream of an answer: the policies' stream filters in
// order, and the stream's last delta event (the template of an event
// that releases what the filters still hold when the stream ends).
type llmStream struct {
	kind    string
	filters []streamFilter
	tmpl    []byte   // a copy of the last delta event's bytes
	tmplAt  llm.Part // the delta's span in tmpl
	ended   bool
}

// streamFilter is one policy's view of a stream: text in, text released.
type streamFilter interface {
	write(c *pipeline.Call, text []byte) ([]byte, *pipeline.Verdict)
	flush(c *pipeline.Call) ([]byte, *pipeline.Verdict)
}

func (s *Stage) llmCall(ctx context.Context, c *pipeline.Call, st *callState, in *pipeline.Content) (pipeline.Verdict, error) {
	ep, err := endpointOf(in.Format)
	if err != nil {
		return pipeline.Verdict{}, err
	}
	body := in.Body
	parts := llm.RequestParts(ep, body)
	cur := make([][]byte, len(parts))
	for i, p := range parts {
		cur[i] = body[p.Start:p.End]
	}
	for _, p := range st.ps {
		if !p.Def.Call {
			continue
		}
		if p.Err != nil {
			if v, ok := failed(c, p, guard.Call, p.Err); !ok {
				return v, nil
			}
			continue
		}
		var v pipeline.Verdict
		stop := false
		switch b := p.Builtin; {
		case p.Rego != nil:
			v, stop = s.regoCheck(ctx, c, st, p, guard.Call, body)
		case b.Exfil != nil:
			v, stop = s.exfilCall(ctx, c, st, p, nil, false)
		case b.Sensitive != nil:
			for i := range parts {
				out, pv, pstop := sensitiveJSON(c, st, p, guard.Call, cur[i])
				if pstop {
					v, stop = pv, true
					break
				}
				if out != nil {
					cur[i] = out
				}
			}
		case b.Injection != nil:
			user := b.Injection.Config().UserContent
			for i, part := range parts {
				third := part.Role == "tool" || part.Kind == "tool_result"
				if !third && !(user && (part.Role == "user" || part.Role == "system" || part.Role == "developer")) {
					continue
				}
				text, err := partText(cur[i])
				if err != nil {
					v, stop = failed(c, p, guard.Call, err)
					stop = !stop
					break
				}
				cls, err := s.classifier(ctx, b.Injection)
				if err != nil {
					v, stop = failed(c, p, guard.Call, err)
					stop = !stop
					break
				}
				iv, err := b.Injection.Evaluate(ctx, text, cls)
				if err != nil {
					v, stop = failed(c, p, guard.Call, err)
					stop = !stop
					break
				}
				if iv.Block {
					rec := pipeline.GuardrailOutcome{Score: score(iv.Combined), Rules: iv.Kinds()}
					what := "a tool result in the conversation"
					if !third {
						what = "the " + part.Role + "'s message"
					}
					if act(c, p, guard.Call, "deny", rec) {
						v, stop = deny(p, fmt.Sprintf("%s looks like a prompt injection (score %.2f: %s)", what, iv.Combined, strings.Join(iv.Kinds(), ", "))), true
						break
					}
				}
			}
		}
		if stop {
			return v, nil
		}
	}
	var edits []edit
	for i, p := range parts {
		if !same(cur[i], body[p.Start:p.End]) {
			edits = append(edits, edit{p.Start, p.End, cur[i]})
		}
	}
	return rewritten(body, splice(body, edits)), nil
}

// llmRequest notes what the result phase needs from the request: its
// response_format schema.
func (s *Stage) llmRequest(st *callState, in *pipeline.Content) error {
	ep, err := endpointOf(in.Format)
	if err != nil {
		return err
	}
	ls := st.llmState(ep)
	if sch, ok := llm.ResponseFormatSchema(ep, in.Body); ok {
		ls.schema = append([]byte(nil), sch...)
	}
	return nil
}

// partText is the text of a part: a JSON string decoded, or an object's
// JSON.
func partText(raw []byte) ([]byte, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return raw, nil
	}
	if err := jsonwalk.Check(raw, 1); err != nil {
		return nil, err
	}
	return jsonwalk.Decode(nil, raw), nil
}

func (st *callState) llmState(ep llm.Endpoint) *llmState {
	if st.llm == nil {
		st.llm = &llmState{ep: ep, streams: map[string]*llmStream{}}
	}
	return st.llm
}

func (s *Stage) llmResult(ctx context.Context, c *pipeline.Call, st *callState, out *pipeline.Content) (pipeline.Verdict, error) {
	ep, err := endpointOf(out.Format)
	if err != nil {
		return pipeline.Verdict{}, err
	}
	ls := st.llmState(ep)
	if out.Final {
		return s.llmAnswer(ctx, c, st, ls, out.Body)
	}
	return s.llmStreamPiece(ctx, c, st, ls, out.Body)
}

// llmAnswer checks a whole (not streamed) answer.
func (s *Stage) llmAnswer(ctx context.Context, c *pipeline.Call, st *callState, ls *llmState, body []byte) (pipeline.Verdict, error) {
	if len(body) == 0 || body[0] != '{' {
		return pipeline.Verdict{}, nil
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte(`{"error"`)) || bytes.Contains(body[:min(len(body), 32)], []byte(`"type":"error"`)) {
		return pipeline.Verdict{}, nil // an error answer carries no output
	}
	parts := llm.ResponseParts(ls.ep, body)
	cur := make([][]byte, len(parts))
	for i, p := range parts {
		cur[i] = body[p.Start:p.End]
	}
	taint := false
	for _, p := range st.ps {
		if !p.Def.Result {
			continue
		}
		if p.Err != nil {
			if v, ok := failed(c, p, guard.Result, p.Err); !ok {
				return v, nil
			}
			continue
		}
		switch b := p.Builtin; {
		case p.Rego != nil:
			if v, stop := s.regoCheck(ctx, c, st, p, guard.Result, body); stop {
				return v, nil
			}
		case b.Schema != nil:
			if v, stop := s.answerSchema(c, p, ls, parts, cur); stop {
				return v, nil
			}
		case b.Exfil != nil:
			for i, part := range parts {
				out, v, stop := exfilPart(c, p, part, cur[i], true)
				if stop {
					return v, nil
				}
				if out != nil {
					cur[i] = out
				}
			}
			taint = taint || b.Exfil.Config().Trifecta && st.tags.Private
		case b.Sensitive != nil:
			for i := range parts {
				out, v, stop := sensitiveJSON(c, st, p, guard.Result, cur[i])
				if stop {
					return v, nil
				}
				if out != nil {
					cur[i] = out
				}
				if b.Sensitive.Config().Restore && !p.Def.Monitor {
					r, err := b.Sensitive.RestoreJSON(st.maskContext(), cur[i])
					if err == nil {
						cur[i] = r
					}
				}
			}
		}
	}
	if taint {
		run, err := st.runKey(c)
		if err == nil {
			err = s.tri.Received(ctx, run, targetName(c, st), st.tags)
		}
		if err != nil {
			return deny(firstExfil(st), "the run's taint could not be recorded: "+errText(err)), nil
		}
	}
	var edits []edit
	for i, p := range parts {
		if !same(cur[i], body[p.Start:p.End]) {
			edits = append(edits, edit{p.Start, p.End, cur[i]})
		}
	}
	return rewritten(body, splice(body, edits)), nil
}

func firstExfil(st *callState) *Policy {
	for _, p := range st.ps {
		if p.Builtin != nil && p.Builtin.Exfil != nil {
			return p
		}
	}
	return st.ps[0]
}

// answerSchema validates the answer's text against the request's
// response_format schema.
func (s *Stage) answerSchema(c *pipeline.Call, p *Policy, ls *llmState, parts []llm.Part, cur [][]byte) (pipeline.Verdict, bool) {
	if ls.schema == nil {
		return pipeline.Verdict{}, false
	}
	for i, part := range parts {
		if part.Kind != "text" {
			continue
		}
		text, err := partText(cur[i])
		if err != nil {
			return failed(c, p, guard.Result, err)
		}
		return s.schemaText(c, p, ls.schema, text)
	}
	return pipeline.Verdict{}, false // no text: a tool call or a refusal
}

// schemaText validates an answer's text against schema.
func (s *Stage) schemaText(c *pipeline.Call, p *Policy, schema, text []byte) (pipeline.Verdict, bool) {
	err := s.schemas.Answer(schema, text)
	if err == nil {
		return pipeline.Verdict{}, false
	}
	rec := pipeline.GuardrailOutcome{Reason: errText(err)}
	var ve *guardSchemaError
	if errors.As(err, &ve) {
		rec.Entities = map[string]int{"violation": len(ve.Violations)}
	}
	if act(c, p, guard.Result, "deny", rec) {
		return deny(p, "the answer does not match the request's response_format schema: "+errText(err)), true
	}
	return pipeline.Verdict{}, false
}

// exfilPart checks (and with action mask rewrites) the destinations in
// one part of an answer: links and images in texts, URLs and hosts in
// tool call arguments. It records nothing when quiet.
func exfilPart(c *pipeline.Call, p *Policy, part llm.Part, raw []byte, record bool) ([]byte, pipeline.Verdict, bool) {
	g := p.Builtin.Exfil
	if g.Config().Allowed == nil {
		return nil, pipeline.Verdict{}, false
	}
	text, err := partText(raw)
	if err != nil {
		v, ok := failed(c, p, guard.Result, err)
		return nil, v, !ok
	}
	var vs []exfil.Violation
	if part.Kind == "tool_call" {
		if vs, err = g.CheckJSON(text); err != nil {
			vs, err = g.CheckText(text), nil // arguments that are not JSON (yet): their links
		}
	} else {
		vs = g.CheckText(text)
	}
	if len(vs) == 0 {
		return nil, pipeline.Verdict{}, false
	}
	rec := pipeline.GuardrailOutcome{Entities: map[string]int{"destination": len(vs)}, Reason: vs[0].Reason}
	if g.Config().Action == exfil.ActionMask && part.Kind != "tool_call" {
		if !record {
			if p.Def.Monitor {
				return nil, pipeline.Verdict{}, false
			}
		} else if !act(c, p, guard.Result, "rewrite", rec) {
			return nil, pipeline.Verdict{}, false
		}
		out := exfil.RewriteText(text, vs)
		if raw[0] == '"' {
			return jsonwalk.AppendString(nil, out), pipeline.Verdict{}, false
		}
		return out, pipeline.Verdict{}, false
	}
	if record && act(c, p, guard.Result, "deny", rec) || !record && !p.Def.Monitor {
		return nil, deny(p, fmt.Sprintf("the answer links to %d destination(s) that are not allowed (%s)", len(vs), vs[0].Reason)), true
	}
	return nil, pipeline.Verdict{}, false
}

type guardSchemaError = schema.ValidationError
