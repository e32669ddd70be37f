package catalogtest

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// Property is the driver of a property test over random catalogs: Check
// runs on Iterations catalogs (Short under -short), each with its own
// seed (from the clock; the environment variable Env replays one) and
// returns how many questions it asked. A failing catalog stops the test
// with the command that replays its seed; fewer than 100 questions a
// catalog fail the test.
type Property struct {
	Env        string // e.g. CATALOG_PROPERTY_SEED
	Package    string // the package path in the replay command, e.g. ./catalog/
	Iterations int
	Short      int
	Check      func(t *testing.T, seed uint64) int
}

// Run runs the property test p in t.
func (p Property) Run(t *testing.T) {
	t.Helper()
	base := uint64(time.Now().UnixNano())
	iterations := p.Iterations
	if testing.Short() {
		iterations = p.Short
	}
	if v := os.Getenv(p.Env); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", p.Env, err)
		}
		base, iterations = s, 1
	}
	questions := 0
	for it := 0; it < iterations; it++ {
		seed := base + uint64(it)
		questions += p.Check(t, seed)
		if t.Failed() {
			t.Fatalf("replay with %s=%d go test -run %s %s", p.Env, seed, t.Name(), p.Package)
		}
	}
	t.Logf("%d catalogs, %d questions", iterations, questions)
	if questions < iterations*100 {
		t.Fatalf("only %d questions asked", questions)
	}
}

// Rand is the random source of the catalog with this seed.
func Rand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}
