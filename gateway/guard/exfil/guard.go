package exfil

import (
	"bytes"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
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

func (g *Guard) violation(l Link) (Violation, bool) {
	if l.Kind == KindEmail && !g.cfg.Emails {
		return Violation{}, false
	}
	switch {
	case l.HostErr != nil:
		return Violation{Link: l, Reason: "invalid host"}, true
	case l.Host.Name == "" && !l.Host.IP.IsValid():
		return Violation{}, false // no host: a relative reference
	case !g.cfg.Allowed.Allows(l.Host):
		return Violation{Link: l, Reason: "destination not allowed"}, true
	}
	return Violation{}, false
}

// allowedFast reports whether a plain ASCII host (lower case, as
// urlHostFast returns it) is allowed, without allocating.
func (g *Guard) allowedFast(host []byte) bool {
	a := g.cfg.Allowed
	if a.exact[string(host)] {
		return true
	}
	for _, s := range a.suffixes {
		if bytes.HasSuffix(host, []byte(s)) {
			return true
		}
	}
	return false
}

// CheckText returns the disallowed links in text (model output, messages).
// Links to allowed hosts cost no allocation.
func (g *Guard) CheckText(text []byte) []Violation {
	if g.cfg.Allowed == nil {
		return nil
	}
	var vs []Violation
	eachTextLink(text, func(kind LinkKind, raw []byte, s, e int) bool {
		if h, ok, err := urlHostFast(raw); err == nil && ok && h != nil && g.allowedFast(h) {
			return true
		}
		var l Link
		if kind == KindURL && len(raw) > 4 && strings.EqualFold(string(raw[:4]), "www.") {
			l = link(kind, append([]byte("http://"), raw...), s, e)
		} else {
			l = link(kind, raw, s, e)
		}
		if v, bad := g.violation(l); bad {
			vs = append(vs, v)
		}
		return len(vs) < MaxLinks
	})
	return vs
}

// CheckJSON returns the disallowed destinations in a JSON document (tool
// arguments). Malformed JSON is an error (fail closed).
func (g *Guard) CheckJSON(raw []byte) ([]Violation, error) {
	return g.checkJSON(raw, nil)
}

// CheckDoc is CheckJSON on a document another guardrail has already
// walked (jsonwalk.Doc), without decoding it again.
func (g *Guard) CheckDoc(doc *jsonwalk.Doc) ([]Violation, error) {
	return g.checkJSON(nil, doc)
}

func (g *Guard) checkJSON(raw []byte, doc *jsonwalk.Doc) ([]Violation, error) {
	if g.cfg.Allowed == nil {
		return nil, nil
	}
	var vs []Violation
	each := func(fn func(kind LinkKind, val, host []byte, s, e int) bool) error {
		if doc != nil {
			return eachDocLink(doc, fn)
		}
		return eachJSONLink(raw, fn)
	}
	err := each(func(kind LinkKind, val, host []byte, s, e int) bool {
		if kind == KindEmail && !g.cfg.Emails {
			return true
		}
		if host == nil {
			if h, ok, err := urlHostFast(val); err == nil && ok && h != nil && g.allowedFast(h) {
				return true
			}
		} else if plainASCIIHost(host) && !numericLast(host) && g.allowedFast(bytes.TrimSuffix(host, []byte("."))) {
			return true
		}
		if v, bad := g.violation(jsonLink(kind, val, host, s, e)); bad {
			vs = append(vs, v)
		}
		return len(vs) < MaxLinks
	})
	if err != nil {
		return nil, err
	}
	return vs, nil
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
