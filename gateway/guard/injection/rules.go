package injection

import (
	"fmt"
	"strconv"
	"strings"
)

// Phrase rules. A pattern is a sequence of slots separated by spaces:
//
//	ignore|disregard       one of the words
//	instruct~              a word starting with "instruct"
//	$link $ident $num      a URL or e-mail, a snake_case identifier, a number
//	*3                     up to three arbitrary words
//	?the                   an optional word
//
// Slots without a gap between them must be adjacent words.

type slot struct {
	words    []uint64
	prefixes []string
	optional bool
	gap      int // arbitrary words allowed before this slot
}

type rule struct {
	kind   string
	weight float64
	slots  []slot
	src    string
}

type ruleDef struct {
	kind    string
	weight  float64
	pattern string
}

// expand replaces the first "(a b|c)" group of a pattern by each of its
// alternatives (which may be several words), recursively.
func expand(p string) []string {
	i := strings.IndexByte(p, '(')
	if i < 0 {
		return []string{p}
	}
	j := strings.IndexByte(p[i:], ')')
	if j < 0 {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[i+1:i+j], "|") {
		out = append(out, expand(p[:i]+alt+p[i+j+1:])...)
	}
	return out
}

func compileRule(d ruleDef) (rule, error) {
	r := rule{kind: d.kind, weight: d.weight, src: d.pattern}
	gap := 0
	for _, f := range strings.Fields(d.pattern) {
		if strings.HasPrefix(f, "*") {
			n, err := strconv.Atoi(f[1:])
			if err != nil || n < 1 || n > 12 {
				return rule{}, fmt.Errorf("rule %q: bad gap %q", d.pattern, f)
			}
			gap += n
			continue
		}
		var s slot
		if strings.HasPrefix(f, "?") {
			s.optional = true
			f = f[1:]
		}
		for _, w := range strings.Split(f, "|") {
			switch {
			case w == "":
				return rule{}, fmt.Errorf("rule %q: empty word", d.pattern)
			case strings.HasSuffix(w, "~"):
				s.prefixes = append(s.prefixes, strings.TrimSuffix(w, "~"))
			default:
				s.words = append(s.words, hashString(w))
			}
		}
		s.gap = gap
		gap = 0
		r.slots = append(r.slots, s)
	}
	if len(r.slots) == 0 || r.slots[0].optional || len(r.slots[0].prefixes) > 0 {
		return rule{}, fmt.Errorf("rule %q: must start with plain words", d.pattern)
	}
	return r, nil
}

func (s *slot) matches(n *normalized, t token) bool {
	for _, h := range s.words {
		if t.h == h || t.class != 0 && t.class == h {
			return true
		}
	}
	if len(s.prefixes) > 0 {
		w := n.word(t)
		for _, p := range s.prefixes {
			if len(w) >= len(p) && string(w[:len(p)]) == p {
				return true
			}
		}
	}
	return false
}

// match tries rule r with its first slot at token i; it returns the index
// of the last matched token.
func (r *rule) match(n *normalized, i int) (int, bool) {
	return r.matchFrom(n, 1, i)
}

func (r *rule) matchFrom(n *normalized, k, last int) (int, bool) {
	if k == len(r.slots) {
		return last, true
	}
	s := &r.slots[k]
	for j := last + 1; j <= last+1+s.gap && j < len(n.toks); j++ {
		if s.matches(n, n.toks[j]) {
			if end, ok := r.matchFrom(n, k+1, j); ok {
				return end, true
			}
		}
	}
	if s.optional {
		return r.matchFrom(n, k+1, last)
	}
	return 0, false
}

// ruleSet indexes rules by the words of their first slot.
type ruleSet struct {
	rules []rule
	bloom [1 << 10]uint64 // 64K-bit filter on first-word hashes
	index map[uint64][]int32
}

func newRuleSet(defs []ruleDef) (*ruleSet, error) {
	rs := &ruleSet{index: map[uint64][]int32{}}
	for _, d0 := range defs {
		for _, p := range expand(d0.pattern) {
			d := d0
			d.pattern = p
			r, err := compileRule(d)
			if err != nil {
				return nil, err
			}
			id := int32(len(rs.rules))
			rs.rules = append(rs.rules, r)
			for _, h := range r.slots[0].words {
				rs.index[h] = append(rs.index[h], id)
				b := h & 0xFFFF
				rs.bloom[b>>6] |= 1 << (b & 63)
			}
		}
	}
	return rs, nil
}

// each calls fn for every rule match (rule, first token, last token).
func (rs *ruleSet) each(n *normalized, fn func(r *rule, first, last int)) {
	for i, t := range n.toks {
		for _, h := range [2]uint64{t.h, t.class} {
			if h == 0 {
				continue
			}
			b := h & 0xFFFF
			if rs.bloom[b>>6]&(1<<(b&63)) == 0 {
				continue
			}
			for _, id := range rs.index[h] {
				r := &rs.rules[id]
				if last, ok := r.match(n, i); ok {
					fn(r, i, last)
				}
			}
			if t.class == t.h {
				break
			}
		}
	}
}
