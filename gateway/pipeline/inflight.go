package pipeline

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxInFlightPerSubject is the calls one subject may have in
// progress at once when Config.MaxInFlightPerSubject is 0: a quarter of
// the HTTP listener's default 1,024 requests.
const DefaultMaxInFlightPerSubject = 256

// ErrInFlight is the Cause of the KindLimited refusal of a call beyond its
// subject's in-flight cap (Config.MaxInFlightPerSubject), so that
// observers tell it from a rate limit.
var ErrInFlight = errors.New("the subject's calls in progress are at their cap")

// inFlightShards is the number of shards of an inFlight (a power of two).
const inFlightShards = 64

// inFlight counts each subject's calls in progress, so that one caller
// cannot take every request slot of the listener. An entry exists only
// while its count is above zero: the map holds at most one entry per call
// in progress. (gateway/internal/ttlcache does not fit: it evicts and
// expires entries, and an evicted count would give its subject fresh
// slots.)
type inFlight struct {
	max    int32
	seed   maphash.Seed
	shards [inFlightShards]inFlightShard
}

type inFlightShard struct {
	mu sync.Mutex
	m  map[string]int32
	_  [48]byte // keep shards' locks on separate cache lines
}

func newInFlight(max int) *inFlight {
	f := &inFlight{max: int32(max), seed: maphash.MakeSeed()}
	for i := range f.shards {
		f.shards[i].m = make(map[string]int32)
	}
	return f
}

func (f *inFlight) shard(subject string) *inFlightShard {
	return &f.shards[maphash.String(f.seed, subject)&(inFlightShards-1)]
}

// acquire takes one of subject's slots, or reports false when all of them
// are taken.
func (f *inFlight) acquire(subject string) bool {
	s := f.shard(subject)
	s.mu.Lock()
	n := s.m[subject]
	ok := n < f.max
	if ok {
		s.m[subject] = n + 1
	}
	s.mu.Unlock()
	return ok
}

// release gives back a slot acquire took; the entry goes at zero.
func (f *inFlight) release(subject string) {
	s := f.shard(subject)
	s.mu.Lock()
	if n := s.m[subject]; n > 1 {
		s.m[subject] = n - 1
	} else {
		delete(s.m, subject)
	}
	s.mu.Unlock()
}

// len is the number of subjects with calls in progress (tests).
func (f *inFlight) len() int {
	n := 0
	for i := range f.shards {
		s := &f.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// admitSubject takes a slot of the call's subject (end of the
// authenticate stage); the call's end (finish) gives it back.
func (p *Pipeline) admitSubject(c *Call) *Error {
	subject := c.Identity.Subject
	if !p.inFlight.acquire(subject) {
		return &Error{Kind: KindLimited, Status: http.StatusTooManyRequests, RetryAfter: time.Second, Cause: ErrInFlight,
			Message: fmt.Sprintf("too many calls in progress: at most %d at once for one user; retry once one has ended", p.inFlight.max),
			Reason:  fmt.Sprintf("in-flight limit: %d calls of the subject in progress", p.inFlight.max)}
	}
	c.slot, c.slotHeld = subject, true
	return nil
}

// releaseSubject gives back the slot the call holds, if any.
func (p *Pipeline) releaseSubject(c *Call) {
	if c.slotHeld {
		p.inFlight.release(c.slot)
		c.slot, c.slotHeld = "", false
	}
}
