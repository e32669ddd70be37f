package bodypool_test

import (
	"testing"

	"github.com/mandatehq/mandate/gateway/internal/bodypool"
)

// TestPool: a buffer comes back empty with its memory; one beyond
// MaxKept is not kept.
func TestPool(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		kept bool
	}{
		{"small", 4 << 10, true},
		{"at the bound", bodypool.MaxKept, true},
		{"beyond the bound", bodypool.MaxKept + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p bodypool.Pool
			b := p.Get()
			if len(*b) != 0 {
				t.Fatalf("a new buffer holds %d bytes", len(*b))
			}
			*b = append(*b, make([]byte, tc.size)...)
			p.Put(b)
			if tc.kept && len(*b) != 0 {
				t.Fatalf("a buffer put back holds %d bytes", len(*b))
			}
			// sync.Pool may drop what it was given (it does at random under
			// -race): a kept buffer must come back at least once in a few tries.
			kept := false
			for range 100 {
				got := p.Get()
				if len(*got) != 0 {
					t.Fatalf("Get returned a buffer holding %d bytes", len(*got))
				}
				if cap(*got) >= tc.size {
					kept = true
					break
				}
				p.Put(b)
			}
			if kept != tc.kept {
				t.Fatalf("kept %v, want %v", kept, tc.kept)
			}
		})
	}
}
