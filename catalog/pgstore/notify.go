package pgstore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/mandatehq/mandate/catalog"
)

// The change records of an append travel in its notifications, so that
// the other replicas apply them without reading them (catalog.Carrier).
// A payload is "<last> <first> <MAC> <records>": the records of revisions
// first..last, their JSON (which never holds a raw newline) joined by
// newlines, and HMAC-SHA256 of "<last> <first> <records>" under the
// notification key, base64 without padding. An append sends as few such
// payloads as fit under PostgreSQL's limit (8,000 bytes) and, for a record
// larger than that, for the records past maxNotifyBytes or without a key,
// "<revision>" alone: the last payload announces the new head either way.
// Old replicas read only "<revision>" payloads; to them the others are
// wake-ups without a revision (they poll).

// Bounds of the change records notifications carry.
const (
	// maxNotifyPayload is below PostgreSQL's limit of a NOTIFY payload
	// (8,000 bytes).
	maxNotifyPayload = 7900
	// maxNotifyBytes bounds the records one append carries in all.
	maxNotifyBytes = 64 << 10
	// carriedRing is how many revisions' carried records a Store keeps.
	carriedRing = 512
)

// notifyKey is the key of the notifications' MACs, with a pool of HMAC
// states (a new one costs ten times the MAC of a record).
type notifyKey struct{ pool sync.Pool }

// SetNotifyKey sets the key the change records in notifications are
// authenticated with: every replica of the database derives the same one
// from the installation's master key (key), and the records of an append
// go with its notifications only once it is set. Any role that can
// connect to the database can NOTIFY (pg_notify needs no privilege, and
// also runs in a read-only transaction), so a record without the MAC of
// this key is never applied: the follower reads it instead.
func (s *Store) SetNotifyKey(key []byte) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mandate catalog notifications v1"))
	derived := m.Sum(nil)
	k := &notifyKey{}
	k.pool.New = func() any { return hmac.New(sha256.New, derived) }
	s.notifyKey.Store(k)
}

// sum is the MAC of a payload's head ("<last> <first>") and records
// (joined by newlines).
func (k *notifyKey) sum(head string, records ...[]byte) []byte {
	m := k.pool.Get().(hash.Hash)
	defer k.pool.Put(m)
	m.Reset()
	m.Write(bytesOf(head))
	for i, r := range records {
		if i == 0 {
			m.Write([]byte{' '})
		} else {
			m.Write([]byte{'\n'})
		}
		m.Write(r)
	}
	return m.Sum(nil)
}

// bytesOf is s's bytes, without a copy (a payload is kilobytes, and a
// fresh copy of it costs more than its MAC): read only, by the MAC and
// the JSON decoder.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// notifyPayloads are the NOTIFY payloads of an append of records on base.
func (s *Store) notifyPayloads(base catalog.Revision, records [][]byte) []string {
	key := s.notifyKey.Load()
	revision := func(i int) string { return strconv.FormatInt(int64(base)+int64(i)+1, 10) }
	if key == nil {
		return []string{revision(len(records) - 1)}
	}
	var out []string
	total := 0
	for i := 0; i < len(records); {
		// The head and the MAC take at most 2×20+2+43+1 bytes.
		j, n := i, 0
		for j < len(records) && n+len(records[j])+1 <= maxNotifyPayload-86 && total+n+len(records[j]) <= maxNotifyBytes {
			n += len(records[j]) + 1
			j++
		}
		if j == i {
			out = append(out, revision(i))
			i++
			continue
		}
		head := revision(j-1) + " " + revision(i)
		mac := base64.RawStdEncoding.EncodeToString(key.sum(head, records[i:j]...))
		var b strings.Builder
		b.Grow(len(head) + len(mac) + 2 + n)
		b.WriteString(head)
		b.WriteByte(' ')
		b.WriteString(mac)
		for k, r := range records[i:j] {
			if k == 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte('\n')
			}
			b.Write(r)
		}
		out = append(out, b.String())
		total += n
		i = j
	}
	return out
}

// carriedGroup is one notification's records, checked when first asked
// for (a replica never asks for its own commits').
type carriedGroup struct {
	first, last int64
	head, mac   string
	body        string

	once  sync.Once
	parts []string // nil: the MAC or the records are wrong
}

// received takes a notification's payload: the revision it announces,
// after keeping the records it carries.
func (s *Store) received(payload string) (int64, bool) {
	lastS, rest, carries := strings.Cut(payload, " ")
	last, err := strconv.ParseInt(lastS, 10, 64)
	if err != nil {
		return 0, false
	}
	if !carries {
		return last, true
	}
	firstS, rest, _ := strings.Cut(rest, " ")
	mac, body, _ := strings.Cut(rest, " ")
	first, err := strconv.ParseInt(firstS, 10, 64)
	if err != nil || first < 1 || first > last || last-first >= carriedRing {
		return last, true
	}
	g := &carriedGroup{first: first, last: last, head: lastS + " " + firstS, mac: mac, body: body}
	s.carriedMu.Lock()
	for rev := first; rev <= last; rev++ {
		s.carried[rev%carriedRing] = g
	}
	s.carriedMu.Unlock()
	return last, true
}

// records checks g under key and splits its records.
func (g *carriedGroup) records(key *notifyKey) []string {
	g.once.Do(func() {
		mac, err := base64.RawStdEncoding.DecodeString(g.mac)
		if err != nil || !hmac.Equal(mac, key.sum(g.head, bytesOf(g.body))) {
			return
		}
		if parts := strings.Split(g.body, "\n"); int64(len(parts)) == g.last-g.first+1 {
			g.parts = parts
		}
	})
	return g.parts
}

// Carried implements catalog.Carrier: the records after revision after
// that notifications carried, without a gap, decoded here (without audit,
// each record's Audit is skipped, not decoded). A notification whose MAC
// is wrong, or a record that does not decode, ends the run (the Service
// reads the rest).
func (s *Store) Carried(after catalog.Revision, audit bool) []catalog.Change {
	key := s.notifyKey.Load()
	if key == nil {
		return nil
	}
	var groups []*carriedGroup
	s.carriedMu.Lock()
	for rev := int64(after) + 1; len(groups) < carriedRing; {
		g := s.carried[rev%carriedRing]
		if g == nil || rev < g.first || rev > g.last {
			break
		}
		groups = append(groups, g)
		rev = g.last + 1
	}
	s.carriedMu.Unlock()
	var out []catalog.Change
	for _, g := range groups {
		parts := g.records(key)
		if parts == nil {
			s.log.Warn().Int64("first", g.first).Int64("last", g.last).
				Msg("catalog store: a notification carried change records without a valid MAC; reading them instead")
			return out
		}
		for rev := max(int64(after)+1, g.first); rev <= g.last; rev++ {
			var c catalog.Change
			var err error
			if audit {
				c, err = decode(rev, bytesOf(parts[rev-g.first]))
			} else {
				c, err = decodeOps(rev, bytesOf(parts[rev-g.first]))
			}
			if err != nil {
				return out
			}
			out = append(out, c)
		}
	}
	return out
}
