// Package bodypool keeps the buffers the gateway reads bodies into (a
// request's, an upstream answer's): a call then writes into memory
// earlier calls kept warm instead of fresh memory it must clear first.
// A buffer goes back only once nothing refers to it any more (the answer
// was written to the client, the call is over); one that grew beyond
// MaxKept is left to the garbage collector, so a few large bodies do not
// pin their memory.
package bodypool

import "sync"

// MaxKept is the largest buffer a Pool keeps.
const MaxKept = 1 << 20

// Pool is a pool of body buffers; its zero value is ready to use.
type Pool struct{ p sync.Pool }

// Get returns an empty buffer.
func (bp *Pool) Get() *[]byte {
	if b, ok := bp.p.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// Put takes back a buffer from Get, which nothing may use any more.
func (bp *Pool) Put(b *[]byte) {
	if cap(*b) <= MaxKept {
		*b = (*b)[:0]
		bp.p.Put(b)
	}
}
