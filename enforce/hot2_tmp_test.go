package enforce

import (
	"hash/maphash"
	"testing"
)

func BenchmarkPiecesTmp(b *testing.B) {
	svc, built := largeCatalog(b)
	e := newEngine(b, svc, Options{})
	snap := e.Snapshot()
	qs := allowedQuestions(b, snap, built, 1, false)
	q := qs[0]
	p := snap.principal(q.Subject, roleSubject)
	n := snap.resolve(q.Securable)
	seed := maphash.MakeSeed()
	b.Run("maphash", func(b *testing.B) {
		var x uint64
		for i := 0; i < b.N; i++ {
			x += maphash.String(seed, q.Subject)
		}
		_ = x
	})
	b.Run("privilege", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			privilege(q.Privilege)
		}
	})
	b.Run("holds", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			snap.holds(p, pUseConnection, n)
		}
	})
	b.Run("allowed", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			snap.Allowed(q)
		}
	})
}
