package mcp

import (
	"crypto/rand"
	"encoding/base64"
	"sync"
	"sync/atomic"
	"time"
)

// session is one MCP session through the gateway: the gateway's own id,
// the upstream's id it stands for, and who may use it.
type session struct {
	id       string // handed to the client
	upstream string // the upstream's Mcp-Session-Id; never leaves the gateway
	subject  string
	actor    string
	conn     string // the connection's full name
	// elicitURL: the client declared capabilities.elicitation.url in
	// initialize.
	elicitURL bool
	lastUsed  atomic.Int64 // unix nanoseconds
}

// sessionTable maps gateway session ids to sessions. It is bounded: when
// full, expired sessions are dropped, then the least recently used ones
// (approximately). A subject holds at most perSubject sessions: its next
// one replaces its own least recently used, so that one caller opening
// sessions without end evicts only its own, never others'.
type sessionTable struct {
	mu         sync.RWMutex
	m          map[string]*session
	bySubject  map[string]map[*session]struct{}
	max        int
	perSubject int
	ttl        time.Duration
	swept      time.Time // last full pass over expired sessions
}

func newSessionTable(max, perSubject int, ttl time.Duration) *sessionTable {
	return &sessionTable{m: make(map[string]*session), bySubject: make(map[string]map[*session]struct{}),
		max: max, perSubject: perSubject, ttl: ttl}
}

// newSessionID returns 192 random bits, base64url (32 visible ASCII
// characters, as MCP requires of session ids).
func newSessionID() string {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// get returns the session id if it exists, has not expired, and belongs to
// subject, actor and conn; otherwise nil, the same for every reason so that
// another user's session looks like an unknown one.
func (t *sessionTable) get(id, subject, actor, conn string, now time.Time) *session {
	t.mu.RLock()
	s := t.m[id]
	t.mu.RUnlock()
	if s == nil {
		return nil
	}
	if now.UnixNano()-s.lastUsed.Load() > int64(t.ttl) {
		t.remove(id)
		return nil
	}
	if s.subject != subject || s.actor != actor || s.conn != conn {
		return nil
	}
	s.lastUsed.Store(now.UnixNano())
	return s
}

func (t *sessionTable) add(s *session, now time.Time) {
	s.lastUsed.Store(now.UnixNano())
	t.mu.Lock()
	defer t.mu.Unlock()
	if own := t.bySubject[s.subject]; len(own) > 0 && len(own) >= t.perSubject {
		var oldest *session
		for o := range own {
			if oldest == nil || o.lastUsed.Load() < oldest.lastUsed.Load() {
				oldest = o
			}
		}
		t.deleteLocked(oldest)
	}
	if len(t.m) >= t.max {
		t.makeRoomLocked(now)
	}
	t.m[s.id] = s
	own := t.bySubject[s.subject]
	if own == nil {
		own = make(map[*session]struct{})
		t.bySubject[s.subject] = own
	}
	own[s] = struct{}{}
}

// deleteLocked drops s from the table.
func (t *sessionTable) deleteLocked(s *session) {
	if t.m[s.id] != s {
		return
	}
	delete(t.m, s.id)
	own := t.bySubject[s.subject]
	delete(own, s)
	if len(own) == 0 {
		delete(t.bySubject, s.subject)
	}
}

// makeRoomLocked drops expired sessions (a full pass at most once a
// minute), then, while the table is still full, the least recently used of
// a random sample of sessions (an approximate LRU in constant time).
func (t *sessionTable) makeRoomLocked(now time.Time) {
	limit := now.UnixNano() - int64(t.ttl)
	if now.Sub(t.swept) >= time.Minute {
		t.swept = now
		for _, s := range t.m {
			if s.lastUsed.Load() < limit {
				t.deleteLocked(s)
			}
		}
	}
	for len(t.m) >= t.max {
		var oldest *session
		n := 0
		for _, s := range t.m { // map iteration starts at a random entry
			if oldest == nil || s.lastUsed.Load() < oldest.lastUsed.Load() {
				oldest = s
			}
			if n++; n == 16 {
				break
			}
		}
		t.deleteLocked(oldest)
	}
}

func (t *sessionTable) remove(id string) {
	t.mu.Lock()
	if s := t.m[id]; s != nil {
		t.deleteLocked(s)
	}
	t.mu.Unlock()
}

func (t *sessionTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// newSession gives s its id: sealed with the handler's key when it has
// one (and s fits), else 192 random bits.
func (h *Handler) newSession(s *session) *session {
	if h.sealer != nil {
		if id, ok := h.sealer.seal(s, h.now()); ok {
			s.id = id
			return s
		}
	}
	s.id = newSessionID()
	return s
}

// session returns the session id names for subject, actor and conn: the
// table's, or, for a sealed id this gateway does not hold (another replica
// or node opened it, or this one dropped it from a full table), the
// sealed session within SessionTTL of its creation, then kept in the
// table. A session idle for SessionTTL was created at least that long ago,
// so taking up sealed ids never brings an expired one back. nil for every
// other case alike.
func (h *Handler) session(id, subject, actor, conn string) *session {
	now := h.now()
	if s := h.sessions.get(id, subject, actor, conn, now); s != nil || h.sealer == nil {
		return s
	}
	s, created, ok := h.sealer.open(id)
	if !ok || now.Sub(created) > h.cfg.SessionTTL || created.After(now.Add(time.Minute)) ||
		s.subject != subject || s.actor != actor || s.conn != conn {
		return nil
	}
	h.sessions.add(s, now)
	return s
}
