package exfil

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The lethal trifecta (private data + untrusted content + an outbound
// channel in one agent run) is broken at its last leg: once a run has
// received data from a source tagged private, its calls to destinations
// tagged external are denied for the rest of the run.
//
// Run state machine (per run key):
//
//	clean ──Received(private source)──▶ tainted(source, at)
//	tainted ──Check(external target)──▶ deny (state unchanged)
//	tainted ──TTL without activity────▶ clean (forgotten)
//
// Everything else leaves the state as it is.

// Tags are a connection's or model service's data-flow tags, from its
// OPTIONS: sensitivity 'private' and egress 'external'.
type Tags struct {
	Private  bool // sensitivity 'private': its results are private data
	External bool // egress 'external': calls to it leave the organisation
}

// ParseTags reads the sensitivity and egress options of a connection or
// model service (other options are not its business and are ignored).
// sensitivity: private | internal | public; egress: external | internal.
func ParseTags(opts map[string]string) (Tags, error) {
	var t Tags
	for k, v := range opts {
		v = strings.ToLower(strings.TrimSpace(v))
		switch strings.ToLower(k) {
		case "sensitivity":
			switch v {
			case "private":
				t.Private = true
			case "internal", "public":
			default:
				return Tags{}, fmt.Errorf("option sensitivity: %q is not one of private, internal, public", v)
			}
		case "egress":
			switch v {
			case "external":
				t.External = true
			case "internal":
			default:
				return Tags{}, fmt.Errorf("option egress: %q is not one of external, internal", v)
			}
		}
	}
	return t, nil
}

// Taint records the first private source a run received data from.
type Taint struct {
	Source string    // the source's full name (catalog.schema.object)
	At     time.Time // when
}

// RunStore keeps the taint of runs. Implementations must be safe for
// concurrent use and bound what they keep; they are shared by all
// requests of a gateway (an in-memory store per process, or a shared one
// across replicas). exfiltest.RunStoreSuite is the conformance suite.
type RunStore interface {
	// Taint marks run as having received private data. The first taint
	// is kept (Source and At do not change); the run's expiry is renewed.
	// An error (for example ErrStoreFull) must make the caller fail
	// closed: refuse the private result rather than forget the taint.
	Taint(ctx context.Context, run string, t Taint) error
	// Tainted returns the run's taint; ok is false for a clean (or
	// expired) run. A lookup renews the run's expiry.
	Tainted(ctx context.Context, run string) (t Taint, ok bool, err error)
}

// ErrStoreFull is returned by a store at its capacity.
var ErrStoreFull = errors.New("run store is full")

// MaxRunKey bounds a run id (X-Mandate-Run-Id or the session id).
const MaxRunKey = 256

// RunKey derives the store key of a run from the identities and the
// agent's run id (the X-Mandate-Run-Id header when the agent sends one,
// else SessionRunID): a run never spans users or agents, and the key
// carries no identity in clear.
func RunKey(subject, actor, runID string) (string, error) {
	if runID == "" || len(runID) > MaxRunKey {
		return "", fmt.Errorf("run id must be 1 to %d bytes", MaxRunKey)
	}
	h := sha256.New()
	for _, p := range []string{subject, actor, runID} {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return "run:" + hex.EncodeToString(h.Sum(nil)[:16]), nil
}

// SessionRunID is the run id of an agent that sends no X-Mandate-Run-Id:
// its MCP session together with its inbound token's id (so a run ends
// with the token or the session).
func SessionRunID(session, tokenID string) string {
	return "session:" + session + "/" + tokenID
}

// Trifecta applies the rule over a RunStore.
type Trifecta struct {
	Store RunStore
	Now   func() time.Time // nil: time.Now
}

// Decision is the outcome of Check.
type Decision struct {
	Deny   bool
	Source string    // the private source that tainted the run
	Since  time.Time // when it did
}

// Received records that run got a result from source; only private
// sources taint. Call it before the result is released to the agent, and
// fail closed (refuse the result) on error.
func (tr *Trifecta) Received(ctx context.Context, run, source string, tags Tags) error {
	if !tags.Private {
		return nil
	}
	now := time.Now
	if tr.Now != nil {
		now = tr.Now
	}
	return tr.Store.Taint(ctx, run, Taint{Source: source, At: now()})
}

// Check decides a call from run to target before it is forwarded: deny
// when target is external and the run is tainted.
func (tr *Trifecta) Check(ctx context.Context, run, target string, tags Tags) (Decision, error) {
	if !tags.External {
		return Decision{}, nil
	}
	t, ok, err := tr.Store.Tainted(ctx, run)
	if err != nil {
		return Decision{Deny: true}, err
	}
	if !ok {
		return Decision{}, nil
	}
	return Decision{Deny: true, Source: t.Source, Since: t.At}, nil
}

// Reason renders a denial for the caller (names, no data).
func (d Decision) Reason(target string) string {
	return fmt.Sprintf("%s is an external destination and this run has received private data from %s", target, d.Source)
}

// MemoryStore is an in-process RunStore: a map with an LRU list, a TTL
// renewed on every access, and a capacity. At capacity (after dropping
// expired runs) Taint returns ErrStoreFull rather than forgetting another
// run's taint.
type MemoryStore struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu   sync.Mutex
	runs map[string]*list.Element
	lru  *list.List // front: most recently used
}

type memEntry struct {
	run     string
	taint   Taint
	expires time.Time
}

// NewMemoryStore returns a store keeping at most max runs for ttl after
// their last use. now may be nil (time.Now).
func NewMemoryStore(ttl time.Duration, max int, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{ttl: ttl, max: max, now: now, runs: map[string]*list.Element{}, lru: list.New()}
}

var _ RunStore = (*MemoryStore)(nil)

// Len is the number of runs kept (expired ones included until dropped).
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.runs)
}

func (m *MemoryStore) Taint(ctx context.Context, run string, t Taint) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.runs[run]; ok {
		e := el.Value.(*memEntry)
		if now.Before(e.expires) {
			e.expires = now.Add(m.ttl)
			m.lru.MoveToFront(el)
			return nil
		}
		m.lru.Remove(el)
		delete(m.runs, run)
	}
	if len(m.runs) >= m.max {
		// drop expired runs from the back (least recently used)
		for el := m.lru.Back(); el != nil; {
			prev := el.Prev()
			if e := el.Value.(*memEntry); !now.Before(e.expires) {
				m.lru.Remove(el)
				delete(m.runs, e.run)
			}
			el = prev
		}
		if len(m.runs) >= m.max {
			return ErrStoreFull
		}
	}
	m.runs[run] = m.lru.PushFront(&memEntry{run: run, taint: t, expires: now.Add(m.ttl)})
	return nil
}

func (m *MemoryStore) Tainted(ctx context.Context, run string) (Taint, bool, error) {
	if err := ctx.Err(); err != nil {
		return Taint{}, false, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.runs[run]
	if !ok {
		return Taint{}, false, nil
	}
	e := el.Value.(*memEntry)
	if !now.Before(e.expires) {
		m.lru.Remove(el)
		delete(m.runs, run)
		return Taint{}, false, nil
	}
	e.expires = now.Add(m.ttl)
	m.lru.MoveToFront(el)
	return e.taint, true, nil
}
