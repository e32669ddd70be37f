package guardstage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/injection"
	"github.com/mandatehq/mandate/gateway/guard/schema"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
	"github.com/mandatehq/mandate/gateway/internal/flight"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Defaults of Config.
const (
	DefaultRunTTL  = time.Hour
	DefaultMaxRuns = 100_000
	// RunIDHeader names an agent's run (prevent_exfiltration's
	// lethal-trifecta rule).
	RunIDHeader = "X-Mandate-Run-Id"
)

// ToolRecorder records the tools the gateway sees in a connection's
// tools/list (catalog.Service.RecordTools in process).
type ToolRecorder interface {
	RecordTools(ctx context.Context, conn catalog.ID, seen []catalog.ToolSeen, approveNew bool, by string) (catalog.Revision, error)
}

// ClassifierFunc returns the Classifier of block_prompt_injection's
// classifier option: the model service it names, called through the LLM
// gateway.
type ClassifierFunc func(ctx context.Context, service string) (injection.Classifier, error)

// Config configures a Stage. Current is required.
type Config struct {
	// Current returns the guardrail policies of the current catalog
	// revision (the decision engine's snapshot's Guardrails); nil: none.
	Current func() *Set
	// Runs keeps the lethal trifecta's run state (default: in process,
	// DefaultRunTTL idle, DefaultMaxRuns).
	Runs exfil.RunStore
	// Schemas compiles JSON Schemas (default: 1024 schemas).
	Schemas *schema.Cache
	// Tools records tools seen in tools/list (pin_tools); nil: nothing is
	// recorded, so tools never seen before stay hidden.
	Tools ToolRecorder
	// Classifier resolves block_prompt_injection's classifier option;
	// nil: a policy with a classifier fails (closed).
	Classifier ClassifierFunc
	Logger     zerolog.Logger
	// Now is the clock of the run store (default time.Now).
	Now func() time.Time
}

// Stage is the pipeline's guard_call and guard_result stages: the
// guardrail policies that apply to a call, run on its payload and on its
// answer. It is safe for concurrent use.
type Stage struct {
	cfg     Config
	tri     *exfil.Trifecta
	schemas *schema.Cache
	tools   *toolSchemas
	flights flight.Group[catalog.Revision] // of recordTools
	log     zerolog.Logger

	afterMiss func() // tests: runs in recordTools before the flight
}

var _ pipeline.Guard = (*Stage)(nil)

// New returns a Stage for cfg.
func New(cfg Config) (*Stage, error) {
	if cfg.Current == nil {
		return nil, errors.New("guardstage: Config.Current is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Runs == nil {
		cfg.Runs = exfil.NewMemoryStore(DefaultRunTTL, DefaultMaxRuns, cfg.Now)
	}
	if cfg.Schemas == nil {
		cfg.Schemas = schema.NewCache(1024, schema.Limits{})
	}
	return &Stage{cfg: cfg, tri: &exfil.Trifecta{Store: cfg.Runs, Now: cfg.Now}, schemas: cfg.Schemas,
		tools: newToolSchemas(toolSchemaMax), log: cfg.Logger.With().Str("component", "guardrails").Logger()}, nil
}

// callState is what the stage knows about one call, from guard_call to
// guard_result (pipeline.Call.GuardState).
type callState struct {
	set  *Set
	id   catalog.ID
	sec  *catalog.Securable
	ps   []*Policy
	tags exfil.Tags
	mc   *sensitive.MaskContext
	run  string
	// llm is the state of an LLM call's answer (llm.go).
	llm *llmState
}

// state returns the call's state, resolving the policies that apply to
// its securable on first use; nil when no policy applies.
func (s *Stage) state(c *pipeline.Call) (*callState, error) {
	if st, ok := c.GuardState.(*callState); ok {
		return st, nil
	}
	set := s.cfg.Current()
	if set == nil || len(set.byOn) == 0 {
		return nil, nil
	}
	id, sec, ps, ok := set.Applying(c.Securable.Type, c.Securable.Name)
	if !ok {
		// The decision came from a newer revision than the guardrails
		// (a securable created a moment ago): fail closed.
		return nil, fmt.Errorf("the guardrails of %s %s are not prepared yet; retry", strings.ToLower(string(c.Securable.Type)), c.Securable.Name)
	}
	if len(ps) == 0 {
		return nil, nil
	}
	st := &callState{set: set, id: id, sec: sec, ps: ps}
	if sec != nil {
		st.tags, _ = exfil.ParseTags(sec.Options) // checked when the options were set
	}
	c.GuardState = st
	return st, nil
}

func (st *callState) has(phase guard.Phase) bool {
	for _, p := range st.ps {
		if on(p, phase) {
			return true
		}
	}
	return false
}

func on(p *Policy, phase guard.Phase) bool {
	if phase == guard.Call {
		return p.Def.Call
	}
	return p.Def.Result
}

func (st *callState) maskContext() *sensitive.MaskContext {
	if st.mc == nil {
		st.mc = sensitive.NewMaskContext()
	}
	return st.mc
}

// runKey is the call's run for the lethal-trifecta rule: the agent's
// X-Mandate-Run-Id, else its inbound token (so a run spans the MCP
// sessions and LLM calls made with one token), scoped to the subject and
// actor.
func (st *callState) runKey(c *pipeline.Call) (string, error) {
	if st.run != "" {
		return st.run, nil
	}
	id := c.Request.Header.Get(RunIDHeader)
	if id == "" {
		tok := ""
		if c.Identity != nil {
			tok = c.Identity.TokenID
		}
		id = "token:" + tok
	}
	subject, actor := "", ""
	if c.Identity != nil {
		subject, actor = c.Identity.Subject, c.Identity.Actor
	}
	k, err := exfil.RunKey(subject, actor, id)
	if err != nil {
		return "", fmt.Errorf("%s: %w", RunIDHeader, err)
	}
	st.run = k
	return k, nil
}

// Call is the guard_call stage.
func (s *Stage) Call(ctx context.Context, c *pipeline.Call, in *pipeline.Content) (pipeline.Verdict, error) {
	st, err := s.state(c)
	if err != nil || st == nil {
		return pipeline.Verdict{}, err
	}
	if strings.HasPrefix(in.Format, llmFormatPrefix) && st.has(guard.Result) {
		// What the result phase needs from the request (its
		// response_format schema).
		if err := s.llmRequest(st, in); err != nil {
			return pipeline.Verdict{}, err
		}
	}
	if !st.has(guard.Call) {
		return pipeline.Verdict{}, nil
	}
	switch {
	case in.Format == pipeline.FormatMCP:
		return s.mcpCall(ctx, c, st, in)
	case strings.HasPrefix(in.Format, llmFormatPrefix):
		return s.llmCall(ctx, c, st, in)
	}
	return pipeline.Verdict{}, fmt.Errorf("guardrails cannot read %q payloads", in.Format)
}

// Result is the guard_result stage: the answer's pieces go through the
// returned ResultGuard (nil when no policy applies to the result).
func (s *Stage) Result(ctx context.Context, c *pipeline.Call) (pipeline.ResultGuard, error) {
	st, err := s.state(c)
	if err != nil || st == nil || !st.has(guard.Result) {
		return nil, err
	}
	return &resultGuard{s: s, st: st}, nil
}

type resultGuard struct {
	s  *Stage
	st *callState
}

func (r *resultGuard) Piece(ctx context.Context, c *pipeline.Call, out *pipeline.Content) (pipeline.Verdict, error) {
	switch {
	case out.Format == pipeline.FormatMCP:
		return r.s.mcpResult(ctx, c, r.st, out)
	case strings.HasPrefix(out.Format, llmFormatPrefix):
		return r.s.llmResult(ctx, c, r.st, out)
	}
	return pipeline.Verdict{}, fmt.Errorf("guardrails cannot read %q payloads", out.Format)
}

// --- outcomes ---

// outcome starts the audit record of p in phase.
func outcome(p *Policy, phase guard.Phase) pipeline.GuardrailOutcome {
	return pipeline.GuardrailOutcome{Policy: p.Name, Guardrail: p.Guardrail(), Phase: phase.String(), Mode: p.Def.Mode()}
}

// act records o with action and reports whether the action takes effect:
// a policy in monitor mode records it as would_<action> and changes
// nothing.
func act(c *pipeline.Call, p *Policy, phase guard.Phase, action string, o pipeline.GuardrailOutcome) bool {
	if o.Policy == "" {
		o = mergeInto(outcome(p, phase), o)
	}
	if p.Def.Monitor {
		o.Action = "would_" + action
		c.AddGuardrail(o)
		return false
	}
	o.Action = action
	c.AddGuardrail(o)
	return true
}

func mergeInto(base, o pipeline.GuardrailOutcome) pipeline.GuardrailOutcome {
	base.Entities, base.Score, base.Rules, base.Tools, base.Reason = o.Entities, o.Score, o.Rules, o.Tools, o.Reason
	return base
}

// note records findings that change nothing (action monitor of
// detect_sensitive_data, a check that passed with something to say).
func note(c *pipeline.Call, p *Policy, phase guard.Phase, o pipeline.GuardrailOutcome) {
	o = mergeInto(outcome(p, phase), o)
	o.Action = "allow"
	c.AddGuardrail(o)
}

// deny is the verdict refusing the call or answer, naming the policy.
func deny(p *Policy, why string) pipeline.Verdict {
	return pipeline.Verdict{Action: pipeline.Deny, Reason: fmt.Sprintf("policy %s (%s): %s", catalog.QuoteIdent(p.Name), p.Guardrail(), why)}
}

// failed handles a guardrail that could not check the content: recorded;
// in enforce mode the content is refused (fail closed), in monitor mode
// the call goes on. ok reports whether to go on.
func failed(c *pipeline.Call, p *Policy, phase guard.Phase, err error) (pipeline.Verdict, bool) {
	o := outcome(p, phase)
	o.Action, o.Reason = "error", errText(err)
	c.AddGuardrail(o)
	if p.Def.Monitor {
		return pipeline.Verdict{}, true
	}
	return deny(p, "the content could not be checked: "+errText(err)), false
}

// errText is an error for the audit and the caller: bounded, one line.
func errText(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func entities(sum []sensitive.EntityCount) map[string]int {
	if len(sum) == 0 {
		return nil
	}
	m := make(map[string]int, len(sum))
	for _, e := range sum {
		m[e.Entity] += e.Count
	}
	return m
}

func score(v float64) *float64 {
	v = float64(int(v*1000+0.5)) / 1000
	return &v
}

// --- rewriting ---

// edit is one replacement of a span of a payload.
type edit struct {
	s, e int
	b    []byte
}

// splice applies edits (sorted by s, not overlapping) to body.
func splice(body []byte, edits []edit) []byte {
	if len(edits) == 0 {
		return body
	}
	n := len(body)
	for _, e := range edits {
		n += len(e.b) - (e.e - e.s)
	}
	out := make([]byte, 0, n)
	last := 0
	for _, e := range edits {
		out = append(out, body[last:e.s]...)
		out = append(out, e.b...)
		last = e.e
	}
	return append(out, body[last:]...)
}

// same reports whether a and b are the same bytes in memory.
func same(a, b []byte) bool { return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0]) }

// rewritten is the verdict for body when it changed.
func rewritten(orig, body []byte) pipeline.Verdict {
	if same(orig, body) {
		return pipeline.Verdict{}
	}
	return pipeline.Verdict{Action: pipeline.Rewrite, Body: body}
}

// targetName is the full name of the call's securable for messages.
func targetName(c *pipeline.Call, st *callState) string {
	if st.sec != nil {
		return st.sec.FullName()
	}
	return c.Securable.Name
}

// classifier resolves a block_prompt_injection policy's classifier.
func (s *Stage) classifier(ctx context.Context, g *injection.Guard) (injection.Classifier, error) {
	name := g.Config().Classifier
	if name == "" {
		return nil, nil
	}
	if s.cfg.Classifier == nil {
		return nil, fmt.Errorf("classifier %s: the classifier needs the LLM gateway in this process", name)
	}
	return s.cfg.Classifier(ctx, name)
}
