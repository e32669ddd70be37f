package guardstage

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// llmStreamPiece checks one piece of a streamed answer (one or more
// server-sent events in the client's format) and returns it rewritten:
// each delta replaced by what the stream's filters release, held text
// released before the event that ends its stream, complete texts the
// events repeat masked like the deltas were.
func (s *Stage) llmStreamPiece(ctx context.Context, c *pipeline.Call, st *callState, ls *llmState, body []byte) (pipeline.Verdict, error) {
	events, err := llm.StreamEvents(ls.ep, body)
	if err != nil {
		return pipeline.Verdict{}, err
	}
	out := make([]byte, 0, len(body)+64)
	for _, ev := range events {
		evb := body[ev.Start:ev.End]
		var edits []edit
		deltaAt := map[string]int{} // stream → index in edits
		released := map[string][]byte{}
		for _, d := range ev.Deltas {
			ss := ls.stream(st, d.Stream, d.Kind)
			text, err := partText(body[d.Start:d.End])
			if err != nil {
				return pipeline.Verdict{}, err
			}
			rel, v := ss.write(c, text)
			if v != nil {
				return *v, nil
			}
			ls.keep(d, rel)
			ss.tmpl = append(ss.tmpl[:0], evb...)
			ss.tmplAt = llm.Part{Start: d.Start - ev.Start, End: d.End - ev.Start}
			released[d.Stream] = append(released[d.Stream], rel...)
			deltaAt[d.Stream] = len(edits)
			edits = append(edits, edit{d.Start - ev.Start, d.End - ev.Start, nil})
		}
		// Streams that end here release what they hold: into this event's
		// own delta of the stream, else in an event made before it.
		var before []byte
		for _, key := range ls.order {
			ss := ls.streams[key]
			if ss.ended || !ev.Done && !endsWith(ev.Ends, key) {
				continue
			}
			ss.ended = true
			rel, v := ss.flush(c)
			if v != nil {
				return *v, nil
			}
			if len(rel) == 0 {
				continue
			}
			ls.keep(llm.Part{Stream: key, Kind: ss.kind}, rel)
			if _, ok := deltaAt[key]; ok {
				released[key] = append(released[key], rel...)
				continue
			}
			if ss.tmpl == nil {
				return pipeline.Verdict{}, fmt.Errorf("stream %s ended with held text and no delta event", key)
			}
			before = append(before, splice(ss.tmpl, []edit{{ss.tmplAt.Start, ss.tmplAt.End, jsonwalk.AppendString(nil, rel)}})...)
		}
		for key, i := range deltaAt {
			edits[i].b = jsonwalk.AppendString(nil, released[key])
		}
		// Complete texts the event repeats: masked as the deltas were.
		for _, f := range ev.Full {
			raw := body[f.Start:f.End]
			nr, v, stop := s.quietMask(c, st, f, raw)
			if stop {
				return v, nil
			}
			if nr != nil {
				edits = append(edits, edit{f.Start - ev.Start, f.End - ev.Start, nr})
			}
		}
		if ev.Done || ls.answerEnded() {
			if v, stop := s.streamEnd(ctx, c, st, ls); stop {
				return v, nil
			}
		}
		sort.Slice(edits, func(i, j int) bool { return edits[i].s < edits[j].s })
		out = append(out, before...)
		out = append(out, splice(evb, edits)...)
	}
	if bytes.Equal(out, body) {
		return pipeline.Verdict{}, nil
	}
	return pipeline.Verdict{Action: pipeline.Rewrite, Body: out}, nil
}

func endsWith(ends []string, key string) bool {
	for _, e := range ends {
		if strings.HasPrefix(key, e) {
			return true
		}
	}
	return false
}

// stream returns the state of one stream, made with a filter for every
// result policy that reads streams (detect_sensitive_data, and
// prevent_exfiltration with an allow-list), in policy order.
func (ls *llmState) stream(st *callState, key, kind string) *llmStream {
	if ss := ls.streams[key]; ss != nil {
		return ss
	}
	ss := &llmStream{kind: kind}
	for _, p := range st.ps {
		if !p.Def.Result || p.Err != nil || p.Builtin == nil {
			continue
		}
		switch b := p.Builtin; {
		case b.Sensitive != nil:
			mc := st.maskContext()
			if p.Def.Monitor {
				mc = nil
			}
			ss.filters = append(ss.filters, &sensFilter{p: p, s: b.Sensitive.Stream(mc, guard.Result)})
		case b.Exfil != nil && b.Exfil.Config().Allowed != nil:
			ss.filters = append(ss.filters, &exfilFilter{p: p, kind: kind})
		}
	}
	ls.streams[key] = ss
	ls.order = append(ls.order, key)
	return ss
}

func (ss *llmStream) write(c *pipeline.Call, text []byte) ([]byte, *pipeline.Verdict) {
	for _, f := range ss.filters {
		var v *pipeline.Verdict
		if text, v = f.write(c, text); v != nil {
			return nil, v
		}
	}
	return append([]byte(nil), text...), nil
}

// flush releases what the filters hold: each filter's held text goes
// through the filters after it.
func (ss *llmStream) flush(c *pipeline.Call) ([]byte, *pipeline.Verdict) {
	var out []byte
	for i, f := range ss.filters {
		rel, v := f.flush(c)
		if v != nil {
			return nil, v
		}
		for _, g := range ss.filters[i+1:] {
			if rel, v = g.write(c, rel); v != nil {
				return nil, v
			}
		}
		out = append(out, rel...)
	}
	return out, nil
}

// keep remembers the first text stream's released text (the answer the
// end-of-stream checks read).
func (ls *llmState) keep(d llm.Part, rel []byte) {
	if d.Kind != "text" {
		return
	}
	if ls.first == "" {
		ls.first = d.Stream
	}
	if d.Stream != ls.first || ls.long {
		return
	}
	if len(ls.answer)+len(rel) > maxAnswer {
		ls.long, ls.answer = true, nil
		return
	}
	ls.answer = append(ls.answer, rel...)
}

func (ls *llmState) answerEnded() bool {
	ss := ls.streams[ls.first]
	return ss != nil && ss.ended
}

// streamEnd runs the checks that need the whole answer, once: the
// response_format schema and Rego policies on the result. What was
// streamed before has been delivered; a refusal ends the stream with an
// error event.
func (s *Stage) streamEnd(ctx context.Context, c *pipeline.Call, st *callState, ls *llmState) (pipeline.Verdict, bool) {
	if ls.ended {
		return pipeline.Verdict{}, false
	}
	ls.ended = true
	for _, p := range st.ps {
		if !p.Def.Result || p.Err != nil {
			continue
		}
		switch {
		case p.Rego != nil:
			if ls.long {
				return failed(c, p, guard.Result, fmt.Errorf("the answer is longer than %d bytes", maxAnswer))
			}
			in := s.regoInput(c, st, guard.Result)
			in["content"] = map[string]any{"text": string(ls.answer)}
			if v, stop := regoVerdict(ctx, c, p, guard.Result, in); stop {
				return v, true
			}
		case p.Builtin.Schema != nil && ls.schema != nil && ls.first != "":
			if ls.long {
				return failed(c, p, guard.Result, fmt.Errorf("the answer is longer than %d bytes", maxAnswer))
			}
			if v, stop := s.schemaText(c, p, ls.schema, ls.answer); stop {
				return v, true
			}
		}
	}
	return pipeline.Verdict{}, false
}

// quietMask masks (and restores) a complete text an event repeats, as
// its deltas were masked, without recording it again.
func (s *Stage) quietMask(c *pipeline.Call, st *callState, f llm.Part, raw []byte) ([]byte, pipeline.Verdict, bool) {
	cur := raw
	for _, p := range st.ps {
		if !p.Def.Result || p.Err != nil || p.Builtin == nil || p.Def.Monitor {
			continue
		}
		switch b := p.Builtin; {
		case b.Sensitive != nil:
			o, err := b.Sensitive.JSON(st.maskContext(), guard.Result, cur)
			if err != nil {
				v, ok := failed(c, p, guard.Result, err)
				return nil, v, !ok
			}
			if o.Deny {
				return nil, deny(p, "sensitive data found: "+entityList(entities(o.Summary))), true
			}
			if o.Content != nil {
				cur = o.Content
			}
			if b.Sensitive.Config().Restore {
				if r, err := b.Sensitive.RestoreJSON(st.maskContext(), cur); err == nil {
					cur = r
				}
			}
		case b.Exfil != nil:
			out, v, stop := exfilPart(c, p, f, cur, false)
			if stop {
				return nil, v, true
			}
			if out != nil {
				cur = out
			}
		}
	}
	if same(cur, raw) {
		return nil, pipeline.Verdict{}, false
	}
	return cur, pipeline.Verdict{}, false
}

// sensFilter is detect_sensitive_data on a stream.
type sensFilter struct {
	p    *Policy
	s    *sensitive.Stream
	seen int // findings recorded
}

func (f *sensFilter) write(c *pipeline.Call, text []byte) ([]byte, *pipeline.Verdict) {
	return f.outcome(c, f.s.Write(text))
}

func (f *sensFilter) flush(c *pipeline.Call) ([]byte, *pipeline.Verdict) {
	return f.outcome(c, f.s.Flush())
}

func (f *sensFilter) outcome(c *pipeline.Call, out []byte) ([]byte, *pipeline.Verdict) {
	fs := f.s.Findings()
	if len(fs) == f.seen {
		return out, nil
	}
	found := fs[f.seen:]
	f.seen = len(fs)
	rec := pipeline.GuardrailOutcome{Entities: entities(sensitive.Summarize(found))}
	switch f.p.Builtin.Sensitive.Config().Action {
	case sensitive.ActionDeny:
		if act(c, f.p, guard.Result, "deny", rec) {
			v := deny(f.p, "sensitive data found: "+entityList(rec.Entities))
			return nil, &v
		}
	case sensitive.ActionMask:
		act(c, f.p, guard.Result, "mask", rec)
	default:
		note(c, f.p, guard.Result, rec)
	}
	return out, nil
}

// exfilFilter is prevent_exfiltration's allow-list on a stream: it holds
// back the text after the last white space (a link is one run of
// non-space characters), so that a link split across events is checked
// whole.
type exfilFilter struct {
	p    *Policy
	kind string
	tail []byte
}

func (f *exfilFilter) write(c *pipeline.Call, text []byte) ([]byte, *pipeline.Verdict) {
	buf := append(f.tail, text...)
	cut := bytes.LastIndexAny(buf, " \n\t\r") + 1
	if cut == 0 && len(buf) > sensitive.MaxHold {
		cut = len(buf)
	}
	check := append([]byte(nil), buf[:cut]...)
	f.tail = append([]byte(nil), buf[cut:]...)
	return f.check(c, check)
}

func (f *exfilFilter) flush(c *pipeline.Call) ([]byte, *pipeline.Verdict) {
	check := f.tail
	f.tail = nil
	return f.check(c, check)
}

func (f *exfilFilter) check(c *pipeline.Call, text []byte) ([]byte, *pipeline.Verdict) {
	if len(text) == 0 {
		return text, nil
	}
	out, v, stop := exfilPart(c, f.p, llm.Part{Kind: f.kind}, text, true)
	if stop {
		return nil, &v
	}
	if out != nil {
		return out, nil
	}
	return text, nil
}
