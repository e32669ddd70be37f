package limits_test

import (
	"testing"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
)

func TestMemoryConformance(t *testing.T) {
	limitstest.Run(t, func(*testing.T) limits.Backend { return limits.NewMemory(nil) })
}
