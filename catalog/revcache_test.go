package catalog_test

import (
	"fmt"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

// TestRevisionCache: an answer is served only at the revision it was
// computed at, an answer of an older revision is not kept, and the cache
// never holds more than its bound.
func TestRevisionCache(t *testing.T) {
	svc := newService(t)
	c := catalog.NewRevisionCache[string, int](svc, 3)
	commit := func() {
		t.Helper()
		name := fmt.Sprintf("u%d@example.com", svc.Revision())
		mustWrite(t, svc, func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindUser, name, nil, false) })
	}

	if _, ok, rev := c.Get("a"); ok || rev != svc.Revision() {
		t.Fatalf("empty cache: hit %v at revision %d, want a miss at %d", ok, rev, svc.Revision())
	}
	_, _, rev := c.Get("a")
	c.Put(rev, "a", 1)
	if v, ok, _ := c.Get("a"); !ok || v != 1 {
		t.Fatalf("at the same revision: %d %v, want 1", v, ok)
	}

	commit()
	if _, ok, _ := c.Get("a"); ok || c.Len() != 0 {
		t.Fatalf("after a commit: hit %v, %d held; want a miss and none", ok, c.Len())
	}
	c.Put(rev, "a", 1) // computed at the older revision
	if _, ok, _ := c.Get("a"); ok {
		t.Fatal("an answer of an older revision was kept")
	}

	_, _, rev = c.Get("")
	for i := range 10 {
		c.Put(rev, fmt.Sprint(i), i)
		if n := c.Len(); n > 3 {
			t.Fatalf("%d answers held, bound 3", n)
		}
	}
}
