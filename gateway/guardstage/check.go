package guardstage

import (
	"errors"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/builtin"
)

// CheckGuardrail checks a built-in guardrail's name and OPTIONS for the
// SQL front end (sqlfront.Config.CheckGuardrail): it returns the
// guardrail's full name (system.ai.detect_sensitive_data), a
// CodeNotFound error for an unknown guardrail, or a CodeInvalidArgument
// error naming the option that is wrong (SQLSTATE 42704 and 22023).
func CheckGuardrail(name string, opts map[string]string) (string, error) {
	n, ok := builtin.Canonical(name)
	if !ok {
		return "", catalog.Errorf(catalog.CodeNotFound, "guardrail %s does not exist", name).
			WithHint("built-in guardrails: " + catalog.BuiltinPrefix + strings.Join(builtin.Names(), ", "+catalog.BuiltinPrefix))
	}
	if err := builtin.Check(n, opts); err != nil {
		var oe *guard.OptionError
		if errors.As(err, &oe) {
			return "", catalog.Errorf(catalog.CodeInvalidArgument, "%s", oe.Error())
		}
		return "", catalog.Errorf(catalog.CodeInvalidArgument, "%s: %v", n, err)
	}
	return catalog.BuiltinPrefix + n, nil
}
