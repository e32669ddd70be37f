package builtin

import (
	"errors"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/gateway/guard"
)

func TestPrepare(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts map[string]string
		err  string
	}{
		{"system.ai.detect_sensitive_data", map[string]string{"entities": "EMAIL,PHONE,CREDIT_CARD,IBAN,US_SSN,SECRET", "action": "mask"}, ""},
		{"SYSTEM.AI.BLOCK_PROMPT_INJECTION", map[string]string{"threshold": "0.8"}, ""},
		{"prevent_exfiltration", map[string]string{"allowed_domains": "docs.example.com, *.corp.example"}, ""},
		{"system.ai.validate_schema", nil, ""},
		{"system.ai.pin_tools", map[string]string{"approve": "first_seen"}, ""},
		{"system.ai.block_unsafe_content", nil, "unknown built-in"},
		{"system.ai.detect_sensitive_data", map[string]string{"entities": "NAME"}, "unknown entity"},
		{"system.ai.pin_tools", map[string]string{"aprove": "first_seen"}, "unknown option aprove"},
	} {
		p, err := Prepare(tc.name, tc.opts)
		if tc.err == "" {
			if err != nil || p == nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s %v: %v, want %q", tc.name, tc.opts, err, tc.err)
		}
	}
	var oe *guard.OptionError
	if err := Check("system.ai.block_prompt_injection", map[string]string{"threshold": "2"}); !errors.As(err, &oe) || oe.Option != "threshold" {
		t.Errorf("option error: %v", err)
	}
}
