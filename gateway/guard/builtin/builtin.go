// Package builtin names Mandate's built-in guardrails (system.ai.*) and
// prepares any of them from a policy's OPTIONS: what the SQL front end
// calls to reject bad options at CREATE POLICY / ALTER POLICY, and what
// the snapshot builder calls to compile each policy once.
package builtin

import (
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard/exfil"
	"github.com/mandatehq/mandate/gateway/guard/injection"
	"github.com/mandatehq/mandate/gateway/guard/pin"
	"github.com/mandatehq/mandate/gateway/guard/schema"
	"github.com/mandatehq/mandate/gateway/guard/sensitive"
)

// The built-in guardrails, as named after USING system.ai.
const (
	DetectSensitiveData  = sensitive.Name // detect_sensitive_data
	BlockPromptInjection = injection.Name // block_prompt_injection
	PreventExfiltration  = exfil.Name     // prevent_exfiltration
	ValidateSchema       = schema.Name    // validate_schema
	PinTools             = pin.Name       // pin_tools
)

// Names returns the built-in names.
func Names() []string {
	return []string{DetectSensitiveData, BlockPromptInjection, PreventExfiltration, ValidateSchema, PinTools}
}

// Canonical maps "system.ai.detect_sensitive_data" (any case) or the bare
// name to the bare name; ok is false for anything else.
func Canonical(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimPrefix(n, "system.ai.")
	for _, b := range Names() {
		if n == b {
			return b, true
		}
	}
	return "", false
}

// Prepared is one compiled built-in policy; exactly one field is set.
type Prepared struct {
	Name      string
	Sensitive *sensitive.Guard
	Injection *injection.Guard
	Exfil     *exfil.Guard
	Schema    *schema.Guard
	Pin       *pin.Guard
}

// Prepare compiles a built-in from its options. Errors are
// *guard.OptionError (bad options) or an unknown-name error.
func Prepare(name string, opts map[string]string) (*Prepared, error) {
	n, ok := Canonical(name)
	if !ok {
		return nil, fmt.Errorf("unknown built-in guardrail %q (built-ins: system.ai.%s)", name, strings.Join(Names(), ", system.ai."))
	}
	p := &Prepared{Name: n}
	var err error
	switch n {
	case DetectSensitiveData:
		p.Sensitive, err = sensitive.Compile(opts)
	case BlockPromptInjection:
		p.Injection, err = injection.Compile(opts)
	case PreventExfiltration:
		p.Exfil, err = exfil.Compile(opts)
	case ValidateSchema:
		p.Schema, err = schema.Compile(opts)
	case PinTools:
		p.Pin, err = pin.Compile(opts)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Check validates a built-in's options without keeping the result.
func Check(name string, opts map[string]string) error {
	_, err := Prepare(name, opts)
	return err
}
