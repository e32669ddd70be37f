package sensitive

import (
	"bytes"

	"github.com/mandatehq/mandate/gateway/guard"
)

// Stream limits.
const (
	// MaxHold bounds what a stream holds back: a single run of
	// non-space bytes longer than this is scanned and released as is (an
	// entity that long is cut at the boundary).
	MaxHold = 4 << 10
	// groupHold is how far back a stream holds separated digit groups (a
	// card number or IBAN printed in groups: "4111 1111 1111 1111").
	groupHold = 48
)

// Stream scans a text stream fed in chunks (SSE text deltas) and returns
// what can be released now, masked (and restored). It holds back only the
// tail that could still be part of an entity: the last run of non-space
// bytes, the digit groups before it (cards, IBANs and phone numbers are
// printed with spaces), a key with ':' or '=' before a value, and an
// unterminated PEM block; so an entity split across chunks is still found
// whole, and text after a space is released at once. A Stream is not safe
// for concurrent use.
type Stream struct {
	d       *Detector
	mc      *MaskContext
	phase   guard.Phase
	mask    bool // rewrite findings (else only record them)
	restore bool
	buf     []byte
	base    int // stream offset of buf[0]
	fs      []Finding
	scratch []Finding
	out     []byte
}

// NewStream returns a stream over d. With mask, findings are replaced by
// their placeholders in mc; with restore, restorable placeholders in the
// released text are replaced by their values (after masking).
func (d *Detector) NewStream(mc *MaskContext, phase guard.Phase, mask, restore bool) *Stream {
	return &Stream{d: d, mc: mc, phase: phase, mask: mask && mc != nil, restore: restore && mc != nil}
}

// Write adds a chunk and returns the text to release now (possibly
// empty). The returned slice is valid until the next call.
func (s *Stream) Write(p []byte) []byte {
	s.buf = append(s.buf, p...)
	cut := safePoint(s.buf, s.d.custom == nil && s.d.words == nil)
	if s.restore {
		// a placeholder split across chunks ("<EMA" + "IL_1>") is held
		// until it is whole, so that it is restored
		if i := bytes.LastIndexByte(s.buf, '<'); i >= 0 && i < cut && partialPlaceholder(s.buf, i) {
			cut = i
		}
	}
	if cut == 0 && len(s.buf) > MaxHold && !s.inPEM() {
		cut = len(s.buf)
	}
	return s.release(cut)
}

// Flush releases everything held back (at the end of the stream).
func (s *Stream) Flush() []byte { return s.release(len(s.buf)) }

// Pending is the number of bytes held back.
func (s *Stream) Pending() int { return len(s.buf) }

// Findings returns all findings so far, with offsets in the stream's
// input (the concatenation of the chunks).
func (s *Stream) Findings() []Finding { return s.fs }

func (s *Stream) inPEM() bool {
	i := bytes.LastIndex(s.buf, []byte("-----BEGIN "))
	return i >= 0 && len(s.buf)-i <= maxPEM && !pemEnded(s.buf[i:])
}

// pemEnded reports whether b (from a BEGIN line) holds a complete END line.
func pemEnded(b []byte) bool {
	k := bytes.Index(b, []byte("-----END "))
	return k >= 0 && bytes.Contains(b[k+9:], []byte("-----"))
}

func (s *Stream) release(cut int) []byte {
	if cut == 0 {
		return nil
	}
	fs := s.d.Find(s.scratch[:0], s.buf)
	// findings that reach past the cut (or to the end of what we have,
	// which may still grow) stay held
	n := 0
	for _, f := range fs {
		if f.End > cut {
			if f.Start < cut {
				cut = f.Start
			}
			break
		}
		n++
	}
	fs = fs[:n]
	for n > 0 && fs[n-1].End > cut {
		n--
	}
	fs = fs[:n]
	s.scratch = fs
	for _, f := range fs {
		g := f
		g.Start += s.base
		g.End += s.base
		s.fs = append(s.fs, g)
	}
	out := s.buf[:cut]
	if s.mask && len(fs) > 0 {
		s.out = s.mc.Mask(s.out[:0], out, fs, s.phase)
		out = s.out
	} else {
		s.out = append(s.out[:0], out...)
		out = s.out
	}
	if s.restore {
		out = s.mc.Restore(out)
	}
	// keep the tail
	rest := copy(s.buf, s.buf[cut:])
	s.buf = s.buf[:rest]
	s.base += cut
	return out
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

// safePoint returns how much of b is final: everything before the tail
// that could still grow into (or be part of) an entity. fine: only
// built-in entities are detected, whose characters are known, so the
// last run of non-space bytes is held only from where an entity could
// start (custom expressions and word lists may match anything: then the
// whole run is held).
func safePoint(b []byte, fine bool) int {
	t := len(b)
	// the last run of non-space bytes
	for t > 0 && !isSpace(b[t-1]) {
		t--
	}
	if fine && keyBefore(b, t) == t && !bytes.ContainsAny(b[t:], ":=") && !isKeyName(bytes.TrimRight(b[t:], "\"'")) {
		// (an assignment's value, and a secret-looking name whose ':'
		// may come next, are held whole: a secret may be made of any
		// bytes)
		t = holdFrom(b, t)
	}
	// separated groups before it ("4111 1111 1111 1111", "GB29 NWBK 6016",
	// "+1 (555) 123"), when the last token could itself end such a group
	if t == len(b) || groupLike(b[t:]) {
		for t > 0 && len(b)-t < groupHold {
			k := t - 1
			if b[k] != ' ' && b[k] != '-' {
				break
			}
			j := k
			for j > 0 && k-j < 13 && groupChar(b[j-1]) {
				j--
			}
			if j == k || !groupLike(b[j:k]) || j > 0 && !isSpace(b[j-1]) && bytes.IndexByte([]byte("\"'([{<:=|"), b[j-1]) < 0 {
				break
			}
			t = j
			if j > 0 && !isSpace(b[j-1]) {
				break // glued to punctuation ("card":"4111): the group starts here
			}
		}
	}
	// a key with ':' or '=' (and an auth scheme) before the value
	t = keyBefore(b, t)
	// an unterminated PEM block
	if i := bytes.LastIndex(b, []byte("-----BEGIN ")); i >= 0 && i < t && len(b)-i <= maxPEM && !pemEnded(b[i:]) {
		t = i
	}
	// a partial placeholder is part of the last token already
	return t
}

// holdFrom returns where, in the last run of non-space bytes b[t:], an
// entity that is still growing could have started: the longest suffix of
// bytes that built-in entities are made of (letters, digits and
// . _ % + - @ : / = ( )). A run that ends with any other byte ("Hello!",
// "done;", "café") can hold no entity that the next chunk continues, and
// is released whole. A run with a URL in it (://, www.) is held whole:
// URLs take almost any byte.
func holdFrom(b []byte, t int) int {
	run := b[t:]
	if bytes.Contains(run, []byte("://")) || containsFold(run, "www.") {
		return t
	}
	k := len(b)
	for k > t && holdByte[b[k-1]] {
		k--
	}
	return k
}

// holdByte marks the bytes built-in entities are made of (besides space,
// which the digit-group rule handles).
var holdByte = func() (h [256]bool) {
	// (not from the class table: package variables are set before init)
	for c := 0; c < 256; c++ {
		h[c] = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for _, c := range "._%+-@:/=()" {
		h[c] = true
	}
	return h
}()

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if eqFold(b, i, s) {
			return true
		}
	}
	return false
}

func groupChar(c byte) bool {
	return isAlnum(c) || c == '(' || c == ')' || c == '+' || c == '-' || c == '.'
}

// groupLike reports whether b can be one group (or the start of one) of a
// number or IBAN printed in groups: digits, upper-case letters, '(' ,')'
// '+', '-' and '.', with a digit or at most four characters.
func groupLike(b []byte) bool {
	if len(b) == 1 && (b[0] == '(' || b[0] == '+') {
		return true
	}
	for len(b) > 0 && bytes.IndexByte([]byte("\"'`([{<:=|"), b[0]) >= 0 {
		b = b[1:]
	}
	for len(b) > 0 && bytes.IndexByte([]byte("\"'`)]}>,;:|"), b[len(b)-1]) >= 0 {
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > 12 {
		return false
	}
	digit, lower := false, false
	for _, c := range b {
		switch {
		case isDigit(c):
			digit = true
		case isUpper(c), c == '(', c == ')', c == '+', c == '-', c == '.':
		case c >= 'a' && c <= 'z':
			lower = true
		default:
			return false
		}
	}
	return digit || len(b) <= 4 && !lower
}

// keyBefore moves t back over an assignment's key and separator ("key:",
// "key =", "key :value", "Authorization: Bearer") directly before it, so
// that the value is never scanned without its key.
func keyBefore(b []byte, t int) int {
	for range 4 {
		j := t
		for j > 0 && (b[j-1] == ' ' || b[j-1] == '\t') && t-j < 8 {
			j--
		}
		if j == 0 || j == t && t == len(b) {
			return t
		}
		ps := j
		for ps > 0 && !isSpace(b[ps-1]) && j-ps < 72 {
			ps--
		}
		prev := b[ps:j]
		for len(prev) > 1 && (prev[len(prev)-1] == '"' || prev[len(prev)-1] == '\'') {
			prev = prev[:len(prev)-1]
		}
		if len(prev) == 0 {
			return t
		}
		last := prev[len(prev)-1]
		tail := b[t:]
		for len(tail) > 0 && (tail[0] == '"' || tail[0] == '\'') {
			tail = tail[1:]
		}
		switch {
		case j < t && t == len(b) && isKeyName(prev):
			t = ps // "password " with the '=' still to come
		case last == ':' || last == '=',
			len(tail) > 0 && (tail[0] == ':' || tail[0] == '='),
			bytes.EqualFold(prev, []byte("bearer")) || bytes.EqualFold(prev, []byte("basic")) || bytes.EqualFold(prev, []byte("token")):
			t = ps
		default:
			return t
		}
	}
	return t
}

// isKeyName reports whether a token (quotes and a leading '{' or ','
// stripped) names a secret in an assignment.
func isKeyName(w []byte) bool {
	for len(w) > 0 && bytes.IndexByte([]byte("{,(\"'"), w[0]) >= 0 {
		w = w[1:]
	}
	k := len(w)
	for k > 0 && is(w[k-1], cKey) {
		k--
	}
	ok, _ := secretKeyName(w[k:])
	return ok
}
