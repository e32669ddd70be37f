package guard

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Phase is where a guardrail runs: on the call (prompts, messages, tool
// arguments) or on the result (model output, tool results).
type Phase uint8

const (
	Call Phase = iota + 1
	Result
)

func (p Phase) String() string {
	switch p {
	case Call:
		return "call"
	case Result:
		return "result"
	}
	return "unknown"
}

// OptionError is a policy option that a guardrail does not accept. Its
// message names the guardrail and the option; the SQL front end returns it
// as is (SQLSTATE 22023, invalid_parameter_value).
type OptionError struct {
	Guardrail string // detect_sensitive_data, ...
	Option    string // the option's name; "" for the option set as a whole
	Msg       string
}

func (e *OptionError) Error() string {
	if e.Option == "" {
		return fmt.Sprintf("%s: %s", e.Guardrail, e.Msg)
	}
	return fmt.Sprintf("%s: option %s: %s", e.Guardrail, e.Option, e.Msg)
}

// Options reads a policy's OPTIONS for one guardrail. Names are case
// insensitive. Every accessor marks its option as known; Done reports the
// options nobody asked for, so a misspelt option is an error instead of a
// silently ignored setting.
type Options struct {
	guardrail string
	m         map[string]string
	known     map[string]bool
	err       error
}

// NewOptions wraps m (not modified) for the named guardrail.
func NewOptions(guardrail string, m map[string]string) *Options {
	o := &Options{guardrail: guardrail, m: make(map[string]string, len(m)), known: map[string]bool{}}
	for k, v := range m {
		lk := strings.ToLower(strings.TrimSpace(k))
		if _, dup := o.m[lk]; dup && o.err == nil {
			o.err = &OptionError{Guardrail: guardrail, Option: lk, Msg: "given more than once"}
		}
		o.m[lk] = v
	}
	return o
}

func (o *Options) fail(name, format string, args ...any) {
	if o.err == nil {
		o.err = &OptionError{Guardrail: o.guardrail, Option: name, Msg: fmt.Sprintf(format, args...)}
	}
}

// Fail records an error for option name (the first error wins).
func (o *Options) Fail(name, format string, args ...any) { o.fail(name, format, args...) }

// Has reports whether the option is set (and marks it known).
func (o *Options) Has(name string) bool {
	o.known[name] = true
	_, ok := o.m[name]
	return ok
}

// String returns the option's value (trimmed), or def when unset.
func (o *Options) String(name, def string) string {
	o.known[name] = true
	v, ok := o.m[name]
	if !ok {
		return def
	}
	return strings.TrimSpace(v)
}

// Enum returns the option's value, lower-cased, which must be one of
// allowed; def when unset.
func (o *Options) Enum(name, def string, allowed ...string) string {
	v := strings.ToLower(o.String(name, def))
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	o.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

// Bool parses true/false (also on/off, yes/no, 1/0); def when unset.
func (o *Options) Bool(name string, def bool) bool {
	v := strings.ToLower(o.String(name, ""))
	switch v {
	case "":
		if o.Has(name) {
			o.fail(name, "empty value; use 'true' or 'false'")
		}
		return def
	case "true", "on", "yes", "1":
		return true
	case "false", "off", "no", "0":
		return false
	}
	o.fail(name, "%q is not a boolean; use 'true' or 'false'", v)
	return def
}

// Float parses a number in [lo, hi]; def when unset.
func (o *Options) Float(name string, def, lo, hi float64) float64 {
	v := o.String(name, "")
	if v == "" && !o.Has(name) {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != f || f < lo || f > hi {
		o.fail(name, "%q is not a number between %g and %g", v, lo, hi)
		return def
	}
	return f
}

// List splits a comma-separated option into trimmed, non-empty items; nil
// when unset.
func (o *Options) List(name string) []string {
	return SplitList(o.String(name, ""))
}

// SplitList splits a comma-separated list into trimmed, non-empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Done returns the first error met, or an *OptionError naming the options
// that no accessor asked for.
func (o *Options) Done() error {
	if o.err != nil {
		return o.err
	}
	var unknown []string
	for k := range o.m {
		if !o.known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	var accepted []string
	for k := range o.known {
		accepted = append(accepted, k)
	}
	sort.Strings(accepted)
	msg := fmt.Sprintf("unknown option %s", strings.Join(unknown, ", "))
	if len(accepted) > 0 {
		msg += fmt.Sprintf(" (accepted: %s)", strings.Join(accepted, ", "))
	} else {
		msg += " (this guardrail takes no options)"
	}
	return &OptionError{Guardrail: o.guardrail, Msg: msg}
}
