package exfil

import (
	"bytes"

	"github.com/mandatehq/mandate/gateway/guard"
)

// Name is the built-in guardrail's name (system.ai.prevent_exfiltration).
const Name = "prevent_exfiltration"

// Action is what the guardrail does with a link to a destination that is
// not allowed.
type Action string

const (
	ActionDeny Action = "deny" // refuse the call or result
	// ActionMask rewrites text (model output): a disallowed image is
	// dropped and a disallowed link loses its URL; JSON is never
	// rewritten (a tool call with a disallowed destination is denied).
	ActionMask Action = "mask"
)

// Config is the parsed OPTIONS of a prevent_exfiltration policy.
type Config struct {
	// Allowed is the allow-list (allowed_domains); nil when the option is
	// absent: no URL check, only the lethal-trifecta rule.
	Allowed *AllowList
	Action  Action // action option; default deny
	// Emails: e-mail recipients in tool arguments count as destinations
	// (emails option, default true).
	Emails bool
	// Trifecta: apply the lethal-trifecta rule (trifecta option, default
	// true).
	Trifecta bool
}

// ParseOptions reads allowed_domains, action, emails and trifecta.
func ParseOptions(opts map[string]string) (Config, error) {
	o := guard.NewOptions(Name, opts)
	c := Config{
		Action:   Action(o.Enum("action", string(ActionDeny), string(ActionDeny), string(ActionMask))),
		Emails:   o.Bool("emails", true),
		Trifecta: o.Bool("trifecta", true),
	}
	if o.Has("allowed_domains") {
		a, err := ParseAllowList(o.String("allowed_domains", ""))
		if err != nil {
			o.Fail("allowed_domains", "%v", err)
		}
		c.Allowed = a
	}
	if err := o.Done(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Guard is a compiled prevent_exfiltration policy (immutable).
type Guard struct{ cfg Config }

// Compile parses the options.
func Compile(opts map[string]string) (*Guard, error) {
	cfg, err := ParseOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Guard{cfg: cfg}, nil
}

// Config returns the parsed options.
func (g *Guard) Config() Config { return g.cfg }

// Violation is a link to a destination that is not allowed.
type Violation struct {
	Link   Link
	Reason string // "destination not allowed" or "invalid host"
}

func (g *Guard) check(links []Link) []Violation {
	if g.cfg.Allowed == nil {
		return nil
	}
	var vs []Violation
	for _, l := range links {
		if l.Kind == KindEmail && !g.cfg.Emails {
			continue
		}
		switch {
		case l.HostErr != nil:
			vs = append(vs, Violation{Link: l, Reason: "invalid host"})
		case !g.cfg.Allowed.Allows(l.Host):
			vs = append(vs, Violation{Link: l, Reason: "destination not allowed"})
		}
	}
	return vs
}

// CheckText returns the disallowed links in text (model output, messages).
func (g *Guard) CheckText(text []byte) []Violation {
	if g.cfg.Allowed == nil {
		return nil
	}
	return g.check(ExtractText(text))
}

// CheckJSON returns the disallowed destinations in a JSON document (tool
// arguments). Malformed JSON is an error (fail closed).
func (g *Guard) CheckJSON(raw []byte) ([]Violation, error) {
	if g.cfg.Allowed == nil {
		return nil, nil
	}
	links, err := ExtractJSON(raw)
	if err != nil {
		return nil, err
	}
	return g.check(links), nil
}

// BlockedLink replaces the URL of a disallowed link in rewritten text.
const BlockedLink = "blocked:"

// RewriteText returns text with every violation's URL replaced by
// BlockedLink (markdown and HTML keep their shape, so an image is not
// fetched and a link is not followed); text itself when vs is empty.
func RewriteText(text []byte, vs []Violation) []byte {
	if len(vs) == 0 {
		return text
	}
	var out bytes.Buffer
	last := 0
	for _, v := range vs {
		s, e := v.Link.Start, v.Link.End
		if s < last || e > len(text) {
			continue
		}
		out.Write(text[last:s])
		out.WriteString(BlockedLink)
		last = e
	}
	out.Write(text[last:])
	return out.Bytes()
}
