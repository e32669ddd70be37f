package sensitive

import (
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// Name is the built-in guardrail's name (system.ai.detect_sensitive_data).
const Name = "detect_sensitive_data"

// Action is what the guardrail does with findings.
type Action string

const (
	ActionMask    Action = "mask"    // replace each finding by its placeholder
	ActionDeny    Action = "deny"    // refuse the call or result
	ActionMonitor Action = "monitor" // record the findings only
)

// Config is the parsed OPTIONS of a detect_sensitive_data policy.
type Config struct {
	// Entities are the built-in types to detect (entities option); nil
	// means all. Custom names may be listed too (they are always on).
	Entities []string
	Action   Action // action option; default mask
	Restore  bool   // restore option
	// Custom entities (custom option: 'NAME=regexp, NAME2=regexp').
	Custom [][2]string
	// Word lists (words option: 'NAME=word|word phrase|word, NAME2=…').
	Words [][2]string
}

// ParseOptions reads a policy's OPTIONS: entities, action, restore,
// custom, words. Unknown options and bad values are a *guard.OptionError.
func ParseOptions(opts map[string]string) (Config, error) {
	o := guard.NewOptions(Name, opts)
	var c Config
	c.Entities = o.List("entities")
	for i, e := range c.Entities {
		c.Entities[i] = strings.ToUpper(e)
	}
	c.Action = Action(o.Enum("action", string(ActionMask), string(ActionMask), string(ActionDeny), string(ActionMonitor)))
	c.Restore = o.Bool("restore", false)
	if v := o.String("custom", ""); v != "" {
		items, err := parseNamed(v)
		if err != nil {
			o.Fail("custom", "%v", err)
		}
		c.Custom = items
	}
	if v := o.String("words", ""); v != "" {
		items, err := parseNamed(v)
		if err != nil {
			o.Fail("words", "%v", err)
		}
		c.Words = items
	}
	if err := o.Done(); err != nil {
		return Config{}, err
	}
	if _, err := c.detector(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) detector() (*Detector, error) {
	fail := func(opt, format string, args ...any) error {
		return &guard.OptionError{Guardrail: Name, Option: opt, Msg: fmt.Sprintf(format, args...)}
	}
	d := &Detector{}
	customNames := map[string]bool{}
	if len(c.Custom) > MaxCustom {
		return nil, fail("custom", "more than %d custom entities", MaxCustom)
	}
	for _, cu := range c.Custom {
		name := strings.ToUpper(cu[0])
		if !validEntityName(name) {
			return nil, fail("custom", "entity name %q: use upper-case letters, digits and '_'", cu[0])
		}
		if _, builtin := builtinKind(name); builtin || customNames[name] {
			return nil, fail("custom", "entity %s defined twice or clashes with a built-in type", name)
		}
		customNames[name] = true
		re, err := compileCustom(name, cu[1])
		if err != nil {
			return nil, fail("custom", "%v", err)
		}
		d.custom = append(d.custom, re)
	}
	if len(c.Words) > 0 {
		lists := map[string][]string{}
		var order []string
		for _, w := range c.Words {
			name := strings.ToUpper(w[0])
			if !validEntityName(name) {
				return nil, fail("words", "entity name %q: use upper-case letters, digits and '_'", w[0])
			}
			if _, builtin := builtinKind(name); builtin || customNames[name] {
				return nil, fail("words", "entity %s defined twice or clashes with a built-in type", name)
			}
			customNames[name] = true
			order = append(order, name)
			lists[name] = strings.Split(w[1], "|")
		}
		wm, err := newWordMatcher(lists, order)
		if err != nil {
			return nil, fail("words", "%v", err)
		}
		d.words = wm
	}
	if c.Entities == nil {
		d.on = kAll
	}
	for _, e := range c.Entities {
		if k, ok := builtinKind(e); ok {
			d.on |= k
			continue
		}
		if !customNames[e] {
			return nil, fail("entities", "unknown entity %q (built-in: %s; or define it with custom or words)", e, strings.Join(Builtins(), ", "))
		}
	}
	return d, nil
}

// Guard is a compiled detect_sensitive_data policy: immutable, safe for
// concurrent use. Prepare it once per policy (when the snapshot is built)
// and evaluate it per call and result.
type Guard struct {
	cfg Config
	det *Detector
}

// Compile parses the options and prepares the detector.
func Compile(opts map[string]string) (*Guard, error) {
	cfg, err := ParseOptions(opts)
	if err != nil {
		return nil, err
	}
	det, err := cfg.detector()
	if err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg, det: det}, nil
}

// Config returns the parsed options.
func (g *Guard) Config() Config { return g.cfg }

// Detector returns the compiled detector.
func (g *Guard) Detector() *Detector { return g.det }

// Outcome is the result of evaluating content.
type Outcome struct {
	Findings []Finding     // ranges in the evaluated content
	Summary  []EntityCount // per entity type: for the audit record
	Deny     bool          // action deny and something was found
	Content  []byte        // the masked content (action mask and something found); nil otherwise
}

// Found reports whether anything was found.
func (o *Outcome) Found() bool { return len(o.Findings) > 0 }

// Text evaluates plain text (a prompt, a message, a text tool result, a
// model answer). With action mask, findings are masked in mc (which must
// be the request's context); restore is applied separately (RestoreText)
// on the answer to the caller.
func (g *Guard) Text(mc *MaskContext, phase guard.Phase, text []byte) Outcome {
	fs := g.det.Find(nil, text)
	return g.outcome(mc, phase, text, fs)
}

func (g *Guard) outcome(mc *MaskContext, phase guard.Phase, text []byte, fs []Finding) Outcome {
	o := Outcome{Findings: fs}
	if len(fs) == 0 {
		return o
	}
	o.Summary = Summarize(fs)
	switch g.cfg.Action {
	case ActionDeny:
		o.Deny = true
	case ActionMask:
		if mc != nil {
			o.Content = mc.Mask(make([]byte, 0, len(text)+16*len(fs)), text, fs, phase)
		}
	}
	return o
}

// JSON evaluates a JSON document (tool arguments, structuredContent, a
// JSON answer); findings are ranges in raw. Malformed JSON is an error:
// fail closed.
func (g *Guard) JSON(mc *MaskContext, phase guard.Phase, raw []byte) (Outcome, error) {
	if g.cfg.Action != ActionMask || mc == nil {
		fs, err := g.det.FindJSON(nil, raw)
		if err != nil {
			return Outcome{}, err
		}
		return g.outcome(nil, phase, raw, fs), nil
	}
	out, fs, err := g.det.MaskJSON(mc, phase, raw)
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{Findings: fs, Summary: Summarize(fs)}
	if len(fs) > 0 {
		o.Content = out
	}
	return o, nil
}

// JSONDoc is JSON on a document another guardrail has already walked
// (jsonwalk.Doc): the same outcome, without decoding it again.
func (g *Guard) JSONDoc(mc *MaskContext, phase guard.Phase, doc *jsonwalk.Doc) (Outcome, error) {
	raw := doc.Raw()
	if g.cfg.Action != ActionMask || mc == nil {
		fs, _, err := g.det.walkDoc(nil, raw, doc, nil, phase)
		if err != nil {
			return Outcome{}, err
		}
		return g.outcome(nil, phase, raw, fs), nil
	}
	fs, out, err := g.det.walkDoc(nil, raw, doc, mc, phase)
	if err != nil {
		return Outcome{}, err
	}
	o := Outcome{Findings: fs, Summary: Summarize(fs)}
	if len(fs) > 0 && out != nil {
		o.Content = out
	}
	return o, nil
}

// Stream returns a streaming scanner for one response or request body
// (masking when the action is mask; restoring when restore is on and
// phase is Result).
func (g *Guard) Stream(mc *MaskContext, phase guard.Phase) *Stream {
	return g.det.NewStream(mc, phase, g.cfg.Action == ActionMask, g.cfg.Restore && phase == guard.Result)
}

// RestoreText restores the caller's own values in an answer when the
// restore option is on; otherwise it returns text unchanged.
func (g *Guard) RestoreText(mc *MaskContext, text []byte) []byte {
	if !g.cfg.Restore || mc == nil {
		return text
	}
	return mc.Restore(text)
}

// RestoreJSON is RestoreText for a JSON document.
func (g *Guard) RestoreJSON(mc *MaskContext, raw []byte) ([]byte, error) {
	if !g.cfg.Restore || mc == nil {
		return raw, nil
	}
	return mc.RestoreJSON(raw)
}
