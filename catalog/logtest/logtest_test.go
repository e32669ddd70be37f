package logtest_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog/logtest"
)

// TestBufferConcurrent: writers and readers at once (run with -race);
// every write is there once.
func TestBufferConcurrent(t *testing.T) {
	var b logtest.Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				fmt.Fprintf(&b, "line %d.%d\n", i, j)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := b.Count("line "); n != 800 {
		t.Fatalf("Count = %d, want 800", n)
	}
}
