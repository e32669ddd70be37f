package sensitive

import (
	"strconv"
	"sync"

	"github.com/mandatehq/mandate/gateway/guard"
)

// MaxMaskValues bounds the distinct values one MaskContext numbers; beyond
// it values are masked as <ENTITY> (not restorable).
const MaxMaskValues = 4096

// MaskContext is the per-request masking state: the same value gets the
// same placeholder (<EMAIL_1>, <CREDIT_CARD_2>) for the whole request, on
// the call and on the result, and placeholders created on the call can be
// restored in the answer to the caller. It is safe for concurrent use.
// Create one per request (an LLM call, or an MCP tools/call and its
// result); never share one between requests or callers.
type MaskContext struct {
	mu      sync.Mutex
	byValue map[string]map[string]int // entity → value → index
	byPH    map[string]int            // placeholder → index
	entries []maskEntry
	next    map[string]int
}

type maskEntry struct {
	placeholder string
	value       string
	restorable  bool
}

// NewMaskContext returns an empty context.
func NewMaskContext() *MaskContext {
	return &MaskContext{byValue: map[string]map[string]int{}, byPH: map[string]int{}, next: map[string]int{}}
}

// Len is the number of distinct masked values.
func (mc *MaskContext) Len() int {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return len(mc.entries)
}

// placeholder returns the placeholder for value; restorable marks it as
// one the caller sent (masked on the call phase).
func (mc *MaskContext) placeholder(entity string, value []byte, restorable bool) string {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	vals := mc.byValue[entity]
	if i, ok := vals[string(value)]; ok {
		if restorable {
			mc.entries[i].restorable = true
		}
		return mc.entries[i].placeholder
	}
	if len(mc.entries) >= MaxMaskValues {
		return "<" + entity + ">"
	}
	mc.next[entity]++
	ph := "<" + entity + "_" + strconv.Itoa(mc.next[entity]) + ">"
	if vals == nil {
		vals = map[string]int{}
		mc.byValue[entity] = vals
	}
	v := string(value)
	vals[v] = len(mc.entries)
	mc.byPH[ph] = len(mc.entries)
	mc.entries = append(mc.entries, maskEntry{placeholder: ph, value: v, restorable: restorable})
	return ph
}

// Mask returns text with every finding (sorted, non-overlapping, as Find
// returns them) replaced by its placeholder, appended to dst. Values
// masked on the call phase become restorable.
func (mc *MaskContext) Mask(dst, text []byte, fs []Finding, phase guard.Phase) []byte {
	last := 0
	for _, f := range fs {
		if f.Start < last || f.End > len(text) {
			continue
		}
		dst = append(dst, text[last:f.Start]...)
		dst = append(dst, mc.placeholder(f.Entity, text[f.Start:f.End], phase == guard.Call)...)
		last = f.End
	}
	return append(dst, text[last:]...)
}

// Restore replaces the restorable placeholders in text by their original
// values. It returns text itself (no copy) when there is nothing to
// restore.
func (mc *MaskContext) Restore(text []byte) []byte {
	var out []byte
	last := 0
	for i := 0; i < len(text); i++ {
		if text[i] != '<' {
			continue
		}
		e := placeholderEnd(text, i)
		if e < 0 {
			continue
		}
		v, ok := mc.lookup(text[i:e])
		if !ok {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(text)+64)
		}
		out = append(out, text[last:i]...)
		out = append(out, v...)
		last = e
		i = e - 1
	}
	if out == nil {
		return text
	}
	return append(out, text[last:]...)
}

func (mc *MaskContext) lookup(ph []byte) (string, bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	i, ok := mc.byPH[string(ph)]
	if !ok || !mc.entries[i].restorable {
		return "", false
	}
	return mc.entries[i].value, true
}

// maxPlaceholder is the longest placeholder: '<' + 40-byte name + '_' +
// digits + '>'.
const maxPlaceholder = 1 + 40 + 1 + 6 + 1

// placeholderEnd returns the end of a placeholder <NAME_N> at i, or -1.
func placeholderEnd(b []byte, i int) int {
	j := i + 1
	for j < len(b) && j-i < maxPlaceholder && (isUpper(b[j]) || isDigit(b[j]) || b[j] == '_') {
		j++
	}
	if j >= len(b) || b[j] != '>' || j-i < 4 {
		return -1
	}
	// NAME_digits
	k := j - 1
	for k > i && isDigit(b[k]) {
		k--
	}
	if k == j-1 || b[k] != '_' || k == i+1 {
		return -1
	}
	return j + 1
}

// partialPlaceholder reports whether b[i:] could be the start of a
// placeholder (for streams: hold it back).
func partialPlaceholder(b []byte, i int) bool {
	if len(b)-i > maxPlaceholder {
		return false
	}
	for j := i + 1; j < len(b); j++ {
		if !(isUpper(b[j]) || isDigit(b[j]) || b[j] == '_') {
			return false
		}
	}
	return true
}
