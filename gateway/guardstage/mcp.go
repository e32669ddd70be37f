package guardstage

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/injection"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
	"github.com/mandatehq/mandate/gateway/guard/pin"
	"github.com/mandatehq/mandate/gateway/guard/schema"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// MCP payloads: a tools/call's arguments on the call; on the result the
// response to it (tool results and structuredContent), to resources/read
// and prompts/get (their contents), and to tools/list (pin_tools and the
// tools' outputSchemas for validate_schema). Notifications and server
// requests in a stream pass unchecked.

// contentMethods are the methods whose results carry content for the
// content guardrails (sensitive data, injection, trifecta, Rego).
var contentMethods = map[string]bool{"tools/call": true, "resources/read": true, "prompts/get": true}

// span is the raw span of a member value (end 0: absent).
func member(raw []byte, name string) ([]byte, int, int, error) {
	sp, err := jsonwalk.Members(raw, name)
	if err != nil {
		return nil, 0, 0, err
	}
	s, e := sp[0][0], sp[0][1]
	if e == 0 {
		return nil, 0, 0, nil
	}
	return raw[s:e], s, e, nil
}

// mcpCall checks a tools/call's arguments.
func (s *Stage) mcpCall(ctx context.Context, c *pipeline.Call, st *callState, in *pipeline.Content) (pipeline.Verdict, error) {
	if c.Action != "tools/call" {
		return pipeline.Verdict{}, nil
	}
	body := in.Body
	params, ps, _, err := member(body, "params")
	if err != nil || params == nil {
		return pipeline.Verdict{}, fmt.Errorf("tools/call without params: %v", err)
	}
	args, as, ae, err := member(params, "arguments")
	if err != nil {
		return pipeline.Verdict{}, err
	}
	orig := args
	if args == nil {
		args = []byte("{}")
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
		var stop bool
		switch b := p.Builtin; {
		case p.Rego != nil:
			v, stop = s.regoCheck(ctx, c, st, p, guard.Call, args)
		case b.Pin != nil:
			v, stop = s.pinCall(c, st, p)
		case b.Exfil != nil:
			v, stop = s.exfilCall(ctx, c, st, p, args, true)
		case b.Sensitive != nil:
			var out []byte
			out, v, stop = sensitiveJSON(c, st, p, guard.Call, args)
			if out != nil {
				args = out
			}
		case b.Injection != nil:
			if b.Injection.Config().UserContent {
				v, stop = s.injectionJSON(ctx, c, p, guard.Call, args)
			}
		}
		if stop {
			return v, nil
		}
	}
	if orig == nil || same(args, orig) {
		return pipeline.Verdict{}, nil
	}
	return rewritten(body, splice(body, []edit{{ps + as, ps + ae, args}})), nil
}

// pinCall refuses a tools/call of a tool that is not approved as last
// seen.
func (s *Stage) pinCall(c *pipeline.Call, st *callState, p *Policy) (pipeline.Verdict, bool) {
	tool := c.Item
	pins := st.set.Pins(st.id)
	pn, ok := pins[tool]
	status := catalog.ToolNew
	if ok {
		status = pn.Status()
	}
	if status == catalog.ToolApproved {
		return pipeline.Verdict{}, false
	}
	conn := targetName(c, st)
	var why string
	switch {
	case !ok:
		why = fmt.Sprintf("tool %q of connection %s has not been approved (list the tools first; an administrator approves them with ALTER CONNECTION %s APPROVE TOOLS)", tool, conn, conn)
	case status == catalog.ToolChanged:
		why = fmt.Sprintf("the definition of tool %q of connection %s changed since it was approved (ALTER CONNECTION %s APPROVE TOOLS %s approves the new one)", tool, conn, conn, catalog.QuoteIdent(tool))
	default:
		why = fmt.Sprintf("tool %q of connection %s is new and not approved (ALTER CONNECTION %s APPROVE TOOLS %s)", tool, conn, conn, catalog.QuoteIdent(tool))
	}
	if act(c, p, guard.Call, "deny", pipeline.GuardrailOutcome{Tools: []string{tool}, Reason: status}) {
		return deny(p, why), true
	}
	return pipeline.Verdict{}, false
}

// exfilCall checks a call's destinations (tool arguments, or a model
// request's content when json is false: not checked, only the trifecta)
// and the lethal-trifecta rule for the call's target.
func (s *Stage) exfilCall(ctx context.Context, c *pipeline.Call, st *callState, p *Policy, args []byte, checkLinks bool) (pipeline.Verdict, bool) {
	g := p.Builtin.Exfil
	if checkLinks && args != nil {
		vs, err := g.CheckJSON(args)
		if err != nil {
			return failed(c, p, guard.Call, err)
		}
		if len(vs) > 0 {
			if act(c, p, guard.Call, "deny", pipeline.GuardrailOutcome{Entities: map[string]int{"destination": len(vs)}, Reason: vs[0].Reason}) {
				return deny(p, fmt.Sprintf("%d destination(s) in the arguments are not allowed (%s)", len(vs), vs[0].Reason)), true
			}
		}
	}
	if !g.Config().Trifecta || !st.tags.External {
		return pipeline.Verdict{}, false
	}
	run, err := st.runKey(c)
	if err != nil {
		return failed(c, p, guard.Call, err)
	}
	name := targetName(c, st)
	d, err := s.tri.Check(ctx, run, name, st.tags)
	if err != nil {
		return failed(c, p, guard.Call, err)
	}
	if d.Deny {
		if act(c, p, guard.Call, "deny", pipeline.GuardrailOutcome{Rules: []string{"trifecta"}, Reason: "private data from " + d.Source}) {
			return deny(p, d.Reason(name)), true
		}
	}
	return pipeline.Verdict{}, false
}

// sensitiveJSON runs detect_sensitive_data on a JSON document; out is the
// masked document when it is to replace doc.
func sensitiveJSON(c *pipeline.Call, st *callState, p *Policy, phase guard.Phase, doc []byte) (out []byte, v pipeline.Verdict, stop bool) {
	g := p.Builtin.Sensitive
	mc := st.maskContext()
	if p.Def.Monitor {
		mc = nil // find, change nothing
	}
	o, err := g.JSON(mc, phase, doc)
	if err != nil {
		v, ok := failed(c, p, phase, err)
		return nil, v, !ok
	}
	return sensitiveOutcome(c, p, phase, o)
}

// sensitiveOutcome records o and decides.
func sensitiveOutcome(c *pipeline.Call, p *Policy, phase guard.Phase, o sensitive.Outcome) ([]byte, pipeline.Verdict, bool) {
	if !o.Found() {
		return nil, pipeline.Verdict{}, false
	}
	rec := pipeline.GuardrailOutcome{Entities: entities(o.Summary)}
	switch p.Builtin.Sensitive.Config().Action {
	case "deny":
		if act(c, p, phase, "deny", rec) {
			return nil, deny(p, "sensitive data found: "+entityList(rec.Entities)), true
		}
	case "mask":
		if act(c, p, phase, "mask", rec) {
			return o.Content, pipeline.Verdict{}, false
		}
	default:
		note(c, p, phase, rec)
	}
	return nil, pipeline.Verdict{}, false
}

func entityList(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// injectionJSON scores the strings of a JSON document.
func (s *Stage) injectionJSON(ctx context.Context, c *pipeline.Call, p *Policy, phase guard.Phase, doc []byte) (pipeline.Verdict, bool) {
	g := p.Builtin.Injection
	cls, err := s.classifier(ctx, g)
	if err != nil {
		return failed(c, p, phase, err)
	}
	v, err := g.EvaluateJSON(ctx, doc, cls)
	if err != nil {
		return failed(c, p, phase, err)
	}
	return injectionVerdict(c, p, phase, v)
}

func injectionVerdict(c *pipeline.Call, p *Policy, phase guard.Phase, v injection.Verdict) (pipeline.Verdict, bool) {
	if !v.Block {
		return pipeline.Verdict{}, false
	}
	rec := pipeline.GuardrailOutcome{Score: score(v.Combined), Rules: v.Kinds()}
	if act(c, p, phase, "deny", rec) {
		what := "the tool result"
		if phase == guard.Call {
			what = "the content"
		}
		return deny(p, fmt.Sprintf("%s looks like a prompt injection (score %.2f: %s)", what, v.Combined, strings.Join(v.Kinds(), ", "))), true
	}
	return pipeline.Verdict{}, false
}

// mcpResult checks one JSON-RPC message of the answer.
func (s *Stage) mcpResult(ctx context.Context, c *pipeline.Call, st *callState, out *pipeline.Content) (pipeline.Verdict, error) {
	msg := out.Body
	sp, err := jsonwalk.Members(msg, "result", "method")
	if err != nil {
		return pipeline.Verdict{}, fmt.Errorf("the answer is not JSON: %w", err)
	}
	if sp[1][1] != 0 || sp[0][1] == 0 {
		return pipeline.Verdict{}, nil // a request or notification, or an error response
	}
	rs, re := sp[0][0], sp[0][1]
	result := msg[rs:re]
	method := c.Action
	if !contentMethods[method] && method != "tools/list" {
		// A GET stream's message (a resumed answer): read its shape.
		ksp, err := jsonwalk.Members(result, "tools", "content", "contents", "messages")
		if err != nil {
			return pipeline.Verdict{}, err
		}
		switch {
		case ksp[0][1] != 0:
			method = "tools/list"
		case ksp[1][1] != 0 || ksp[2][1] != 0 || ksp[3][1] != 0:
			method = "tools/call"
		default:
			return pipeline.Verdict{}, nil
		}
	}
	var nr []byte
	var v pipeline.Verdict
	if method == "tools/list" {
		nr, v, err = s.toolsList(ctx, c, st, result)
	} else {
		tool := ""
		if method == "tools/call" && c.Action == "tools/call" {
			tool = c.Item
		}
		nr, v, err = s.contentResult(ctx, c, st, tool, result)
	}
	if err != nil || v.Action == pipeline.Deny || nr == nil {
		return v, err
	}
	return rewritten(msg, splice(msg, []edit{{rs, re, nr}})), nil
}

// contentResult runs the result-phase policies on a result with content;
// out is the rewritten result (nil: unchanged). The result is decoded once
// (jsonwalk.Doc) for every policy that reads it as it came; injection
// scoring, the heaviest reader, runs on another goroutine meanwhile when
// the result is large enough to be worth it.
func (s *Stage) contentResult(ctx context.Context, c *pipeline.Call, st *callState, tool string, result []byte) ([]byte, pipeline.Verdict, error) {
	doc := jsonwalk.GetDoc()
	defer jsonwalk.PutDoc(doc)
	if err := doc.Parse(result); err != nil {
		return nil, pipeline.Verdict{}, fmt.Errorf("the result is not JSON: %w", err)
	}
	scores := s.scoreInjection(ctx, st, doc)
	defer scores.wait() // the doc is in use until the scorer is done
	cur := result
	var spot *Policy
	tainted := false
	var taintBy *Policy
	for i, p := range st.ps {
		if !p.Def.Result {
			continue
		}
		if p.Err != nil {
			if v, ok := failed(c, p, guard.Result, p.Err); !ok {
				return nil, v, nil
			}
			continue
		}
		var v pipeline.Verdict
		var stop bool
		switch b := p.Builtin; {
		case p.Rego != nil:
			v, stop = s.regoCheck(ctx, c, st, p, guard.Result, cur)
		case b.Schema != nil:
			if tool != "" {
				v, stop = s.schemaResult(c, st, p, tool, doc)
			}
		case b.Exfil != nil:
			if b.Exfil.Config().Trifecta && st.tags.Private && !tainted {
				tainted, taintBy = true, p
			}
		case b.Injection != nil:
			r := scores.get(i)
			if r.err != nil {
				v, stop = failed(c, p, guard.Result, r.err)
				stop = !stop
			} else {
				v, stop = injectionVerdict(c, p, guard.Result, r.v)
			}
			if !stop && b.Injection.Config().Spotlight != injection.SpotlightOff && spot == nil {
				spot = p
			}
		case b.Sensitive != nil:
			var out []byte
			if same(cur, result) {
				out, v, stop = sensitiveDoc(c, st, p, guard.Result, doc)
			} else {
				out, v, stop = sensitiveJSON(c, st, p, guard.Result, cur) // after another mask
			}
			if out != nil {
				cur = out
			}
		}
		if stop {
			return nil, v, nil
		}
	}
	if spot != nil {
		out, err := spotlightMCP(cur, spot.Builtin.Injection)
		if err != nil {
			if v, ok := failed(c, spot, guard.Result, err); !ok {
				return nil, v, nil
			}
		} else if out != nil && act(c, spot, guard.Result, "rewrite", pipeline.GuardrailOutcome{Rules: []string{"spotlight"}}) {
			cur = out
		}
	}
	if tainted {
		// The result is about to reach the agent: its run has now seen
		// private data. A taint that cannot be recorded refuses it.
		run, err := st.runKey(c)
		if err == nil {
			err = s.tri.Received(ctx, run, targetName(c, st), st.tags)
		}
		if err != nil {
			if v, ok := failed(c, taintBy, guard.Result, err); !ok {
				return nil, v, nil
			}
		}
	}
	if same(cur, result) {
		return nil, pipeline.Verdict{}, nil
	}
	return cur, pipeline.Verdict{}, nil
}

// parallelMin is the size of content worth scoring on another goroutine
// (below it, starting one costs more than it saves).
const parallelMin = 1024

// injectionScores are the verdicts of the result's injection policies, by
// policy index, computed ahead (and, for large content, concurrently).
type injectionScores struct {
	done chan struct{}
	res  map[int]scoreResult
}

type scoreResult struct {
	v   injection.Verdict
	err error
}

func (sc *injectionScores) wait() {
	if sc != nil && sc.done != nil {
		<-sc.done
	}
}

func (sc *injectionScores) get(i int) scoreResult {
	sc.wait()
	return sc.res[i]
}

// scoreInjection starts scoring doc for every injection policy on the
// result.
func (s *Stage) scoreInjection(ctx context.Context, st *callState, doc *jsonwalk.Doc) *injectionScores {
	var idx []int
	for i, p := range st.ps {
		if p.Def.Result && p.Err == nil && p.Builtin != nil && p.Builtin.Injection != nil {
			idx = append(idx, i)
		}
	}
	sc := &injectionScores{res: make(map[int]scoreResult, len(idx))}
	if len(idx) == 0 {
		return sc
	}
	run := func() {
		for _, i := range idx {
			g := st.ps[i].Builtin.Injection
			cls, err := s.classifier(ctx, g)
			if err != nil {
				sc.res[i] = scoreResult{err: err}
				continue
			}
			v, err := g.EvaluateDoc(ctx, doc, cls)
			sc.res[i] = scoreResult{v: v, err: err}
		}
	}
	if len(doc.Raw()) < parallelMin || len(st.ps) == len(idx) {
		run()
		return sc
	}
	sc.done = make(chan struct{})
	go func() {
		defer close(sc.done)
		run()
	}()
	return sc
}

// sensitiveDoc is sensitiveJSON on the decoded result.
func sensitiveDoc(c *pipeline.Call, st *callState, p *Policy, phase guard.Phase, doc *jsonwalk.Doc) ([]byte, pipeline.Verdict, bool) {
	g := p.Builtin.Sensitive
	mc := st.maskContext()
	if p.Def.Monitor {
		mc = nil
	}
	o, err := g.JSONDoc(mc, phase, doc)
	if err != nil {
		v, ok := failed(c, p, phase, err)
		return nil, v, !ok
	}
	return sensitiveOutcome(c, p, phase, o)
}

// spotlightMCP replaces the text of each text content block of a tool
// result with its spotlighted form; nil when there is none.
func spotlightMCP(result []byte, g *injection.Guard) ([]byte, error) {
	content, cs, _, err := member(result, "content")
	if err != nil || content == nil || content[0] != '[' {
		return nil, err
	}
	elems, err := jsonwalk.Elements(content)
	if err != nil {
		return nil, err
	}
	var edits []edit
	for _, el := range elems {
		block := content[el[0]:el[1]]
		sp, err := jsonwalk.Members(block, "type", "text")
		if err != nil || sp[0][1] == 0 || sp[1][1] == 0 || string(block[sp[0][0]:sp[0][1]]) != `"text"` {
			continue
		}
		raw := block[sp[1][0]:sp[1][1]]
		if raw[0] != '"' {
			continue
		}
		text := jsonwalk.Decode(nil, raw)
		sl, err := g.Spotlight(string(text))
		if err != nil {
			return nil, err
		}
		off := cs + el[0]
		edits = append(edits, edit{off + sp[1][0], off + sp[1][1], jsonwalk.AppendString(nil, []byte(sl.Text))})
	}
	if len(edits) == 0 {
		return nil, nil
	}
	return splice(result, edits), nil
}

// schemaResult validates a tools/call result against the tool's
// outputSchema, as last seen in the connection's tools/list.
func (s *Stage) schemaResult(c *pipeline.Call, st *callState, p *Policy, tool string, doc *jsonwalk.Doc) (pipeline.Verdict, bool) {
	sch, known := s.tools.get(st.id, tool)
	if !known {
		note(c, p, guard.Result, pipeline.GuardrailOutcome{Reason: "no outputSchema known for tool " + tool + ": not validated (the gateway learns it from the connection's tools/list)"})
		return pipeline.Verdict{}, false
	}
	if sch == nil {
		return pipeline.Verdict{}, false // the tool declares no outputSchema
	}
	err := s.schemas.ToolResultDoc(sch, doc)
	if err == nil {
		return pipeline.Verdict{}, false
	}
	rec := pipeline.GuardrailOutcome{Tools: []string{tool}, Reason: errText(err)}
	var ve *schema.ValidationError
	if errors.As(err, &ve) {
		rec.Entities = map[string]int{"violation": len(ve.Violations)}
	}
	if act(c, p, guard.Result, "deny", rec) {
		return deny(p, fmt.Sprintf("the result of tool %q does not match its outputSchema: %s", tool, errText(err))), true
	}
	return pipeline.Verdict{}, false
}

// toolsList applies pin_tools to a tools/list result (record what was
// seen, approve on first sight, hide what is not approved) and remembers
// the tools' outputSchemas for validate_schema.
func (s *Stage) toolsList(ctx context.Context, c *pipeline.Call, st *callState, result []byte) ([]byte, pipeline.Verdict, error) {
	var pins, validates []*Policy
	for _, p := range st.ps {
		if !p.Def.Result || p.Builtin == nil {
			continue
		}
		if p.Err != nil {
			if v, ok := failed(c, p, guard.Result, p.Err); !ok {
				return nil, v, nil
			}
			continue
		}
		switch {
		case p.Builtin.Pin != nil:
			pins = append(pins, p)
		case p.Builtin.Schema != nil:
			validates = append(validates, p)
		}
	}
	if len(pins) == 0 && len(validates) == 0 {
		return nil, pipeline.Verdict{}, nil
	}
	tools, ts, _, err := member(result, "tools")
	if err != nil || tools == nil || tools[0] != '[' {
		return nil, pipeline.Verdict{}, err
	}
	elems, err := jsonwalk.Elements(tools)
	if err != nil {
		return nil, pipeline.Verdict{}, err
	}
	if len(elems) > pin.MaxTools {
		return nil, pipeline.Verdict{}, fmt.Errorf("tools/list with more than %d tools", pin.MaxTools)
	}
	defs := make([]pin.Tool, len(elems))
	ok := make([]bool, len(elems))
	for i, el := range elems {
		def := tools[el[0]:el[1]]
		t, err := pin.HashTool(def)
		if err != nil {
			continue // a tool that cannot be pinned stays hidden
		}
		defs[i], ok[i] = t, true
		if len(validates) > 0 {
			out, _, _, err := member(def, "outputSchema")
			if err == nil {
				s.tools.put(st.id, t.Name, out)
			}
		}
	}
	if len(pins) == 0 {
		return nil, pipeline.Verdict{}, nil
	}
	// What the catalog has, and what to record.
	now := time.Now()
	have := st.set.Pins(st.id)
	var seen []catalog.ToolSeen
	names := map[string]int{}
	for i, t := range defs {
		if !ok[i] {
			continue
		}
		if _, dup := names[t.Name]; dup {
			return nil, pipeline.Verdict{}, fmt.Errorf("%w: tool %q defined twice", pin.ErrDefinition, t.Name)
		}
		names[t.Name] = i
		seen = append(seen, catalog.ToolSeen{Name: t.Name, Hash: t.Hash})
	}
	approveNew, admin := false, false
	for _, p := range pins {
		if p.Def.Monitor {
			continue
		}
		if p.Builtin.Pin.Config().Approve == pin.ApproveFirstSeen {
			approveNew = true
		} else {
			admin = true
		}
	}
	approveNew = approveNew && !admin
	approved := map[string]string{}
	for n, p := range have {
		if p.Approved != "" {
			approved[n] = p.Approved
		}
	}
	if todo := catalog.ToolsToRecord(have, seen, now); len(todo) > 0 {
		if err := s.recordTools(ctx, c, st, todo, approveNew); err != nil {
			s.log.Warn().Err(err).Str("connection", targetName(c, st)).Msg("recording the tools seen failed; unapproved tools stay hidden")
		} else if approveNew {
			for _, t := range todo {
				if _, known := have[t.Name]; !known {
					approved[t.Name] = t.Hash // pinned on first sight by this list
				}
			}
		}
	}
	// Visibility: a tool is shown when every pin policy approves it.
	visible := make([]bool, len(elems))
	var hidden []string
	for i, t := range defs {
		visible[i] = ok[i] && approved[t.Name] == t.Hash
		if !visible[i] {
			name := t.Name
			if name == "" {
				name = "?"
			}
			hidden = append(hidden, name)
		}
	}
	if len(hidden) == 0 {
		return nil, pipeline.Verdict{}, nil
	}
	enforce := false
	for _, p := range pins {
		if act(c, p, guard.Result, "hide", pipeline.GuardrailOutcome{Tools: hidden, Reason: fmt.Sprintf("%d tool(s) not approved", len(hidden))}) {
			enforce = true
		}
	}
	if !enforce {
		return nil, pipeline.Verdict{}, nil
	}
	arr := make([]byte, 0, len(tools))
	arr = append(arr, '[')
	first := true
	for i, el := range elems {
		if !visible[i] {
			continue
		}
		if !first {
			arr = append(arr, ',')
		}
		first = false
		arr = append(arr, tools[el[0]:el[1]]...)
	}
	arr = append(arr, ']')
	return splice(result, []edit{{ts, ts + len(tools), arr}}), pipeline.Verdict{}, nil
}

// recordTools records the tools seen (once at a time per connection).
func (s *Stage) recordTools(ctx context.Context, c *pipeline.Call, st *callState, todo []catalog.ToolSeen, approveNew bool) error {
	if s.cfg.Tools == nil {
		return errors.New("no tool recorder")
	}
	by := ""
	if c.Identity != nil {
		by = c.Identity.Subject
		if c.Identity.Actor != "" {
			by += " via " + c.Identity.Actor
		}
	}
	if s.afterMiss != nil {
		s.afterMiss()
	}
	// Recorded since this call's snapshot (by another call's flight, once
	// the catalog's revision reached this gateway): nothing to ask.
	recorded := func() (catalog.Revision, bool) {
		cur := s.cfg.Current()
		if cur == nil {
			return 0, false
		}
		return cur.Revision(), len(catalog.ToolsToRecord(cur.Pins(st.id), todo, time.Now())) == 0
	}
	_, err := s.flights.Do(ctx, fmt.Sprint(st.id, approveNew, todo), 10*time.Second, recorded,
		func(rctx context.Context) (catalog.Revision, error) {
			return s.cfg.Tools.RecordTools(rctx, st.id, todo, approveNew, by)
		})
	return err
}

// regoCheck evaluates a Rego policy on content (the result's, or the
// call's arguments for a policy in monitor mode).
func (s *Stage) regoCheck(ctx context.Context, c *pipeline.Call, st *callState, p *Policy, phase guard.Phase, content []byte) (pipeline.Verdict, bool) {
	input := s.regoInput(c, st, phase)
	if len(content) > 0 {
		var v any
		if err := json.Unmarshal(content, &v); err != nil {
			return failed(c, p, phase, err)
		}
		input["content"] = v
		if phase == guard.Call {
			if a, ok := c.ContextMap()["arguments"]; ok {
				input["arguments"] = a
			}
		}
	}
	return regoVerdict(ctx, c, p, phase, input)
}

func regoVerdict(ctx context.Context, c *pipeline.Call, p *Policy, phase guard.Phase, input map[string]any) (pipeline.Verdict, bool) {
	msgs, err := p.Rego.Deny(ctx, input, 0)
	if err != nil {
		return failed(c, p, phase, err)
	}
	if len(msgs) == 0 {
		return pipeline.Verdict{}, false
	}
	if act(c, p, phase, "deny", pipeline.GuardrailOutcome{Reason: strings.Join(msgs, "; ")}) {
		return deny(p, strings.Join(msgs, "; ")), true
	}
	return pipeline.Verdict{}, false
}

// regoInput is a Rego policy's input in the guardrail stages: what the
// decision engine gives policies at authorization (subject, actor,
// groups, securable, the call's context) with the phase; content is
// added by the caller.
func (s *Stage) regoInput(c *pipeline.Call, st *callState, phase guard.Phase) map[string]any {
	in := map[string]any{"phase": phase.String(), "time": time.Now().UTC().Format(time.RFC3339Nano)}
	if c.Identity != nil {
		in["subject"], in["actor"] = c.Identity.Subject, c.Identity.Actor
		groups := []any{}
		if id, _, ok := st.set.cs.PrincipalByName(c.Identity.Subject); ok {
			for _, g := range st.set.cs.Groups(id) {
				groups = append(groups, g)
			}
		}
		in["groups"] = groups
	}
	in["securable"] = map[string]any{"type": string(c.Securable.Type), "name": targetName(c, st)}
	for k, v := range c.ContextMap() {
		switch k {
		case "subject", "actor", "groups", "securable", "phase", "content", "time":
		default:
			in[k] = v
		}
	}
	if c.Item != "" {
		in["tool"] = c.Item
	}
	return in
}

// toolSchemaMax bounds the outputSchemas remembered.
const toolSchemaMax = 100_000

// toolSchemas remembers each tool's outputSchema as last seen in its
// connection's tools/list (nil: the tool declares none), least recently
// used out.
type toolSchemas struct {
	mu  sync.Mutex
	max int
	m   map[toolKey]*list.Element
	lru *list.List
}

type toolKey struct {
	conn catalog.ID
	tool string
}

type toolEntry struct {
	k      toolKey
	schema []byte
}

func newToolSchemas(max int) *toolSchemas {
	return &toolSchemas{max: max, m: map[toolKey]*list.Element{}, lru: list.New()}
}

func (t *toolSchemas) put(conn catalog.ID, tool string, sch []byte) {
	if sch != nil {
		sch = append([]byte(nil), sch...)
		if string(sch) == "null" {
			sch = nil
		}
	}
	k := toolKey{conn, tool}
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.m[k]; ok {
		el.Value.(*toolEntry).schema = sch
		t.lru.MoveToFront(el)
		return
	}
	t.m[k] = t.lru.PushFront(&toolEntry{k: k, schema: sch})
	for t.lru.Len() > t.max {
		el := t.lru.Back()
		t.lru.Remove(el)
		delete(t.m, el.Value.(*toolEntry).k)
	}
}

func (t *toolSchemas) get(conn catalog.ID, tool string) (sch []byte, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.m[toolKey{conn, tool}]
	if !ok {
		return nil, false
	}
	t.lru.MoveToFront(el)
	return el.Value.(*toolEntry).schema, true
}
