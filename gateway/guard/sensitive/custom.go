package sensitive

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"
	"unicode/utf8"
)

// Limits on custom entities (they come from policy options: bounded so a
// policy cannot make every call expensive).
const (
	MaxCustom      = 32     // custom regular-expression entities
	MaxPatternLen  = 512    // bytes per pattern
	MaxWords       = 10000  // words over all word lists
	MaxWordLen     = 128    // bytes per word
	maxCustomTotal = 1 << 9 // matches per custom pass and content
)

// custom is a regular-expression entity. Matches must stand as whole
// tokens: a match that starts (ends) with a letter, digit or '_' must not
// be preceded (followed) by one.
type custom struct {
	name string
	re   *regexp.Regexp
}

func isWordByte(c byte) bool { return isAlnum(c) || c == '_' }

func (c *custom) find(dst []Finding, b []byte) []Finding {
	if !c.re.Match(b) {
		return dst
	}
	for _, m := range c.re.FindAllIndex(b, maxCustomTotal) {
		s, e := m[0], m[1]
		if s == e {
			continue
		}
		if s > 0 && isWordByte(b[s]) && isWordByte(b[s-1]) || e < len(b) && isWordByte(b[e-1]) && isWordByte(b[e]) {
			continue
		}
		dst = append(dst, Finding{Entity: c.name, Rule: "custom", Start: s, End: e})
	}
	return dst
}

func compileCustom(name, pattern string) (custom, error) {
	if len(pattern) > MaxPatternLen {
		return custom{}, fmt.Errorf("pattern for %s longer than %d bytes", name, MaxPatternLen)
	}
	if _, err := syntax.Parse(pattern, syntax.Perl); err != nil {
		return custom{}, fmt.Errorf("pattern for %s: %v", name, err)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return custom{}, fmt.Errorf("pattern for %s: %v", name, err)
	}
	if re.MatchString("") {
		return custom{}, fmt.Errorf("pattern for %s matches the empty string", name)
	}
	return custom{name: name, re: re}, nil
}

// wordMatcher finds whole words and phrases, ASCII case-insensitively.
type wordMatcher struct {
	names []string      // entity names, in order of first appearance
	first [256][]wEntry // by lower-cased first byte, longest first
}

type wEntry struct {
	word   []byte // lower-cased
	entity string
}

func newWordMatcher(lists map[string][]string, order []string) (*wordMatcher, error) {
	m := &wordMatcher{names: order}
	total := 0
	for _, name := range order {
		for _, w := range lists[name] {
			w = strings.TrimSpace(w)
			if w == "" {
				continue
			}
			if len(w) > MaxWordLen {
				return nil, fmt.Errorf("word list %s: a word is longer than %d bytes", name, MaxWordLen)
			}
			if !utf8.ValidString(w) {
				return nil, fmt.Errorf("word list %s: a word is not valid UTF-8", name)
			}
			if total++; total > MaxWords {
				return nil, fmt.Errorf("more than %d words", MaxWords)
			}
			lw := bytes.ToLower([]byte(w))
			m.first[lw[0]] = append(m.first[lw[0]], wEntry{word: lw, entity: name})
		}
	}
	for i := range m.first {
		sort.SliceStable(m.first[i], func(a, b int) bool { return len(m.first[i][a].word) > len(m.first[i][b].word) })
	}
	return m, nil
}

func (m *wordMatcher) find(dst []Finding, b []byte) []Finding {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if i > 0 && isWordByte(b[i-1]) {
			continue
		}
		cands := m.first[lower(c)]
		if len(cands) == 0 {
			continue
		}
		for _, w := range cands {
			e := i + len(w.word)
			if e > len(b) || e < len(b) && isWordByte(b[e]) && isWordByte(w.word[len(w.word)-1]) {
				continue
			}
			if foldEq(b[i:e], w.word) {
				dst = append(dst, Finding{Entity: w.entity, Rule: "word", Start: i, End: e})
				i = e - 1
				break
			}
		}
	}
	return dst
}

// foldEq compares b with the lower-cased w, folding ASCII letters in b.
func foldEq(b, w []byte) bool {
	for k := range w {
		if lower(b[k]) != w[k] {
			return false
		}
	}
	return true
}

// parseNamed splits "NAME=value, NAME2=value2" where values may contain
// commas: a new item starts at a comma followed by NAME=.
func parseNamed(s string) ([][2]string, error) {
	var out [][2]string
	rest := strings.TrimSpace(s)
	for rest != "" {
		eqi := strings.IndexByte(rest, '=')
		if eqi <= 0 {
			return nil, fmt.Errorf("expected NAME=value, got %q", rest)
		}
		name := strings.TrimSpace(rest[:eqi])
		rest = rest[eqi+1:]
		// the value runs to the next ", NAME=" (or the end)
		end := len(rest)
		for k := 0; k < len(rest); k++ {
			if rest[k] != ',' {
				continue
			}
			t := strings.TrimLeft(rest[k+1:], " \t")
			j := 0
			for j < len(t) && (t[j] >= 'A' && t[j] <= 'Z' || t[j] >= '0' && t[j] <= '9' || t[j] == '_') {
				j++
			}
			if j > 0 && j < len(t) && t[j] == '=' && t[0] >= 'A' && t[0] <= 'Z' {
				end = k
				break
			}
		}
		val := strings.TrimSpace(rest[:end])
		out = append(out, [2]string{name, val})
		if end == len(rest) {
			break
		}
		rest = strings.TrimSpace(rest[end+1:])
	}
	return out, nil
}
