package injection

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/jsonstr"
)

// Signal is one piece of evidence. Start and End are a byte range of the
// scored text (for decoded content, the range of the encoded blob). The
// rule is the built-in pattern or marker that matched: safe to log, it is
// never the text itself.
type Signal struct {
	Kind   string  `json:"kind"`
	Weight float64 `json:"weight"`
	Start  int     `json:"start"`
	End    int     `json:"end"`
	Rule   string  `json:"rule,omitempty"`
}

// Report is the outcome of scoring one text.
type Report struct {
	Score   float64  `json:"score"`   // the built-in score in [0, 1]
	Signals []Signal `json:"signals"` // evidence, by position
}

// Kinds returns the distinct signal kinds, sorted (for the audit record).
func (r *Report) Kinds() []string {
	var out []string
	for _, s := range r.Signals {
		found := false
		for _, k := range out {
			if k == s.Kind {
				found = true
				break
			}
		}
		if !found {
			out = append(out, s.Kind)
		}
	}
	sort.Strings(out)
	return out
}

// Limits on the work one text can cause.
const (
	MaxScoreBytes   = 1 << 20 // longer texts are scored on their first MaxScoreBytes
	maxDecoded      = 64 << 10
	maxDecodeDepth  = 2
	minEncodedBlob  = 20
	maxSignals      = 64
	tagSmugglingMin = 8 // tag characters beyond emoji flag sequences
)

// Scorer is the built-in heuristic. It is immutable and safe for
// concurrent use.
type Scorer struct {
	rules *ruleSet
}

var defaultScorer = sync.OnceValues(func() (*Scorer, error) {
	rs, err := newRuleSet(builtinRules)
	if err != nil {
		return nil, err
	}
	return &Scorer{rules: rs}, nil
})

// NewScorer returns the built-in scorer.
func NewScorer() *Scorer {
	s, err := defaultScorer()
	if err != nil {
		panic(err) // the built-in rules are fixed; a test compiles them
	}
	return s
}

type scratch struct {
	n   normalized
	sub normalized
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// Score scores text.
func (s *Scorer) Score(text []byte) Report {
	if len(text) > MaxScoreBytes {
		text = text[:MaxScoreBytes]
	}
	// text that is itself JSON-encoded (a tool result quoting JSON) is
	// scored with its escapes resolved
	if bytes.Contains(text, []byte(`\u`)) || bytes.Count(text, []byte(`\n`)) >= 2 || bytes.Contains(text, []byte(`\"`)) {
		text = unescapeJSON(text)
	}
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	var sigs []Signal
	sigs = s.scoreText(sigs, sc, text, 0, 0, 0, false)
	inv := sc.n.inv
	tag := sc.n.tag
	if inv.tags+inv.zeroWidth+inv.bidi > 0 {
		// score the text as a reader sees it: without the invisible
		// characters (links and markers split by them are whole again)
		tag = append([]byte(nil), tag...)
		text = stripInvisible(text)
		sigs = s.scoreText(sigs[:0], sc, text, 0, 0, 0, false)
	}
	sigs = charSignals(sigs, text)
	// hidden regions: instructions inside them weigh more
	hidden := hiddenRegions(text)
	if len(hidden) > 0 {
		for i := range sigs {
			g := sigs[i]
			if g.Kind == kUrgency || g.Kind == kHidden || g.Weight < 0.25 {
				continue
			}
			for _, h := range hidden {
				if g.Start >= h[0] && g.End <= h[1] {
					sigs = append(sigs, Signal{Kind: kHidden, Weight: min(0.95, 0.45+g.Weight), Start: g.Start, End: g.End, Rule: g.Rule})
					break
				}
			}
		}
	}
	if inv.tags >= tagSmugglingMin {
		sigs = append(sigs, Signal{Kind: kInvisible, Weight: 0.5, Rule: "unicode tag characters"})
	}
	if inv.zeroWidth >= 2 {
		sigs = append(sigs, Signal{Kind: kInvisible, Weight: 0.3, Rule: "zero-width characters inside words"})
	}
	if inv.bidi >= 1 {
		sigs = append(sigs, Signal{Kind: kInvisible, Weight: 0.3, Rule: "bidi control characters"})
	}
	if len(tag) > 0 && inv.tags >= 4 {
		tag = append([]byte(nil), tag...)
		sigs = s.scoreText(sigs, sc, tag, 0, len(text), 1, true)
	}
	sort.SliceStable(sigs, func(i, j int) bool { return sigs[i].Start < sigs[j].Start })
	if len(sigs) > maxSignals {
		sigs = sigs[:maxSignals]
	}
	return Report{Score: combine(sigs), Signals: sigs}
}

// scoreText runs the phrase rules on text; with encoded, matches are
// reported over [base, base+span) as encoded evidence. It then looks for
// base64 and hex blobs and scores what they decode to.
func (s *Scorer) scoreText(sigs []Signal, sc *scratch, text []byte, base, span, depth int, encoded bool) []Signal {
	n := &sc.n
	if depth > 0 {
		n = &sc.sub
	}
	n.normalize(text)
	mark := len(sigs)
	s.rules.each(n, func(r *rule, first, last int) {
		if len(sigs) >= maxSignals*2 {
			return
		}
		sigs = append(sigs, Signal{Kind: r.kind, Weight: r.weight, Start: int(n.toks[first].os), End: int(n.toks[last].oe), Rule: r.src})
	})
	if encoded {
		// decoded text: character-level evidence too, and everything counts
		// as encoded (hiding instructions in an encoding is evidence)
		sigs = charSignals(sigs, text)
		for i, end := mark, len(sigs); i < end; i++ {
			g := &sigs[i]
			g.Start, g.End = base, base+span
			if g.Weight >= 0.3 && g.Kind != kUrgency {
				sigs = append(sigs, Signal{Kind: kEncoded, Weight: max(0.85, g.Weight), Start: g.Start, End: g.End, Rule: g.Rule})
			}
		}
	}
	if depth >= maxDecodeDepth {
		return sigs
	}
	budget := maxDecoded
	var buf []byte
	forBlobs(text, func(s0, e0 int, isHex bool) bool {
		blob := text[s0:e0]
		var dec []byte
		var ok bool
		if isHex {
			dec, ok = decodeHex(buf[:0], blob)
		} else {
			dec, ok = decodeBase64(buf[:0], blob)
		}
		if !ok || !printable(dec) {
			return true
		}
		budget -= len(dec)
		if budget < 0 {
			return false
		}
		buf = dec
		cp := append([]byte(nil), dec...)
		bs, sp := base+s0, e0-s0
		if encoded {
			bs, sp = base, span
		}
		sigs = s.scoreText(sigs, sc, cp, bs, sp, depth+1, true)
		return true
	})
	return sigs
}

// combine turns signals into a score: per kind the strongest signal (the
// second strongest adds a little), then a noisy-OR across kinds.
func combine(sigs []Signal) float64 {
	type best struct{ a, b float64 }
	var per [12]best
	kinds := [...]string{kOverride, kRole, kMarker, kAddressing, kSecrecy, kTool, kExfil, kInvisible, kHidden, kEncoded, kUrgency}
	for _, g := range sigs {
		for i, k := range kinds {
			if g.Kind == k {
				if g.Weight > per[i].a {
					per[i].a, per[i].b = g.Weight, per[i].a
				} else if g.Weight > per[i].b {
					per[i].b = g.Weight
				}
				break
			}
		}
	}
	p := 1.0
	for _, b := range per {
		w := 1 - (1-b.a)*(1-0.4*b.b)
		p *= 1 - w
	}
	return 1 - p
}

// ---- markers ----

type marker struct {
	text   string // lower case
	weight float64
}

// chat-template tokens and fake role/tool boundaries, at '<' or '['
var angleMarkers = []marker{
	{"<|im_start|>", 0.9}, {"<|im_end|>", 0.9}, {"<|system|>", 0.9}, {"<|assistant|>", 0.9}, {"<|user|>", 0.85},
	{"<|endoftext|>", 0.85}, {"<|eot_id|>", 0.9}, {"<|start_header_id|>", 0.9}, {"<|end_header_id|>", 0.9},
	{"<|begin_of_text|>", 0.85}, {"<start_of_turn>", 0.85}, {"<end_of_turn>", 0.85}, {"<|tool|>", 0.85},
	{"<system>", 0.45}, {"</system>", 0.55}, {"<system_prompt>", 0.7}, {"</system_prompt>", 0.7}, {"<sys>", 0.5},
	{"</tool_result>", 0.7}, {"<tool_result>", 0.5}, {"</function_results>", 0.75}, {"<function_results>", 0.5},
	{"<tool_response>", 0.5}, {"</tool_response>", 0.7}, {"</tool_output>", 0.7}, {"</search_results>", 0.6},
	{"<instructions>", 0.5}, {"</instructions>", 0.5}, {"<important>", 0.55}, {"</important>", 0.4},
	{"<information>", 0.45}, {"<admin>", 0.5}, {"<assistant>", 0.5}, {"</assistant>", 0.5}, {"<human>", 0.4},
	{"<<sys>>", 0.85}, {"<</sys>>", 0.85}, {"<!-- system", 0.6},
	{"[inst]", 0.8}, {"[/inst]", 0.8}, {"[system]", 0.6}, {"[system message]", 0.7}, {"[assistant]", 0.5},
	{"[admin]", 0.4}, {"[developer]", 0.5}, {"[instructions]", 0.5},
}

// role labels at the start of a line
var lineMarkers = []marker{
	{"system:", 0.3}, {"assistant:", 0.35}, {"human:", 0.3}, {"user:", 0.15}, {"developer:", 0.3},
	{"### system", 0.55}, {"### instruction", 0.55}, {"### new instruction", 0.7}, {"## system", 0.45},
	{"system message:", 0.5}, {"system prompt:", 0.5}, {"assistant (to", 0.4},
}

// labels before a ':' that address the model, anywhere after a non-letter
var colonMarkers = []marker{
	{"ai", 0.45}, {"ai agent", 0.5}, {"ai agents", 0.5}, {"ai assistant", 0.5}, {"ai assistants", 0.5}, {"llm", 0.45},
	{"llms", 0.45}, {"language model", 0.5}, {"language models", 0.5}, {"chatgpt", 0.4}, {"claude", 0.4},
	{"copilot", 0.4}, {"assistant", 0.3}, {"[system]", 0.6},
}

// byFirst indexes markers by their first byte (both cases).
func byFirst(ms []marker) (t [256][]marker) {
	for _, m := range ms {
		c := m.text[0]
		t[c] = append(t[c], m)
		if c >= 'a' && c <= 'z' {
			t[c-32] = append(t[c-32], m)
		}
	}
	return t
}

var (
	lineMarkerIndex = byFirst(lineMarkers)
	angleMarkerIdx  = byFirst(angleMarkers)
)

func hasPrefixFold(b []byte, i int, p string) bool {
	if len(b)-i < len(p) {
		return false
	}
	for k := 0; k < len(p); k++ {
		c := b[i+k]
		if c >= 'A' && c <= 'Z' {
			c += 32
		}
		if c != p[k] {
			return false
		}
	}
	return true
}

// markers finds the markers with a few fast scans: line starts, '<' and
// '[', and ':' (a label before it).
func markers(sigs []Signal, b []byte) []Signal {
	add := func(m marker, s int) {
		sigs = append(sigs, Signal{Kind: kMarker, Weight: m.weight, Start: s, End: s + len(m.text), Rule: m.text})
	}
	// line starts
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '>' || b[j] == '*' || b[j] == '-' || b[j] == '_') {
			j++
		}
		if j < len(b) {
			for _, m := range lineMarkerIndex[b[j]] {
				if hasPrefixFold(b, j, m.text) {
					add(m, j)
					break
				}
			}
		}
		k := bytes.IndexByte(b[i:], '\n')
		if k < 0 {
			break
		}
		i += k + 1
	}
	// '<' and '['
	for i := 0; i < len(b); i++ {
		k := bytes.IndexAny(b[i:], "<[")
		if k < 0 {
			break
		}
		i += k
		for _, m := range angleMarkerIdx[b[i]] {
			if hasPrefixFold(b, i, m.text) {
				add(m, i)
				break
			}
		}
	}
	// "label:"
	for i := 0; i < len(b); i++ {
		k := bytes.IndexByte(b[i:], ':')
		if k < 0 {
			break
		}
		i += k
		for _, m := range colonMarkers {
			s := i - len(m.text)
			if s >= 0 && hasPrefixFold(b, s, m.text) && (s == 0 || !isAlnumASCII(b[s-1])) {
				add(m, s)
				break
			}
		}
	}
	return sigs
}

// charSignals adds the character-level evidence: markers, and URLs built
// to carry data out.
func charSignals(sigs []Signal, b []byte) []Signal {
	sigs = markers(sigs, b)
	return urlSignals(sigs, b)
}

// urlSignals flags markdown images whose URL carries a query built to
// receive data (a placeholder such as {…}, $…, <…>, or parameters named
// like data, secret, chat, history, conversation, password, token, key),
// and other URLs with such placeholders.
func urlSignals(sigs []Signal, b []byte) []Signal {
	for i := 0; i+8 < len(b); i++ {
		// jump to the next "![" or "://"
		k := bytes.IndexAny(b[i:], "!:")
		if k < 0 {
			break
		}
		i += k
		if i+8 >= len(b) {
			break
		}
		image := b[i] == '!' && b[i+1] == '['
		if !image && !(b[i] == ':' && b[i+1] == '/' && b[i+2] == '/') {
			continue
		}
		u := i
		if image {
			k := bytes.Index(b[i:min(len(b), i+512)], []byte("]("))
			if k < 0 {
				continue
			}
			u = i + k + 2
		}
		e := u
		for e < len(b) && e-u < 2048 && b[e] != ')' && b[e] != ' ' && b[e] != '\n' && b[e] != '"' && b[e] != '\'' {
			e++
		}
		url := b[u:e]
		q := bytes.IndexByte(url, '?')
		if q < 0 {
			i = e
			continue
		}
		query := url[q:]
		placeholder := bytes.ContainsAny(query, "{}$<>[]")
		named := containsFold(query, "data=") || containsFold(query, "secret") || containsFold(query, "chat=") ||
			containsFold(query, "history") || containsFold(query, "conversation") || containsFold(query, "password") ||
			containsFold(query, "token=") || containsFold(query, "key=") || containsFold(query, "k=") || containsFold(query, "d=") || containsFold(query, "q=")
		switch {
		case image && (placeholder || named):
			sigs = append(sigs, Signal{Kind: kExfil, Weight: 0.7, Start: i, End: e, Rule: "markdown image with a data-carrying query"})
		case placeholder && query[len(query)-1] != '=':
			sigs = append(sigs, Signal{Kind: kExfil, Weight: 0.45, Start: i, End: e, Rule: "URL with a placeholder in its query"})
		case bytes.HasSuffix(query, []byte("=")) && named:
			sigs = append(sigs, Signal{Kind: kExfil, Weight: 0.35, Start: i, End: e, Rule: "URL ending in an empty data parameter"})
		}
		i = e
	}
	return sigs
}

func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if hasPrefixFold(b, i, s) {
			return true
		}
	}
	return false
}

// ---- hidden regions ----

// hiddenRegions returns byte ranges a human reader does not see: HTML and
// markdown comments, image alt text and titles, elements styled invisible.
func hiddenRegions(b []byte) [][2]int {
	if bytes.IndexByte(b, '<') < 0 && !bytes.Contains(b, []byte("![")) && !bytes.Contains(b, []byte("[//]")) && !bytes.Contains(b, []byte("[comment]")) {
		return nil
	}
	var out [][2]int
	add := func(s, e int) {
		if e > s && len(out) < 256 {
			out = append(out, [2]int{s, e})
		}
	}
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '<':
			if hasPrefixFold(b, i, "<!--") {
				e := bytes.Index(b[i+4:], []byte("-->"))
				if e < 0 {
					add(i+4, len(b))
					return out
				}
				add(i+4, i+4+e)
				i += 4 + e
				continue
			}
			// an element styled invisible: its text up to the next tag
			end := bytes.IndexByte(b[i:min(len(b), i+1024)], '>')
			if end < 0 {
				continue
			}
			tag := b[i : i+end]
			if invisibleStyle(tag) {
				s := i + end + 1
				e := bytes.IndexByte(b[s:], '<')
				if e < 0 {
					e = len(b) - s
				}
				add(s, s+e)
			}
			for _, attr := range [...]string{"alt=", "title=", "aria-label=", "data-prompt=", "data-instructions="} {
				if k := indexFold(tag, attr); k >= 0 && k+len(attr) < len(tag) {
					q := tag[k+len(attr)]
					if q == '"' || q == '\'' {
						s := i + k + len(attr) + 1
						if e := bytes.IndexByte(b[s:min(len(b), s+4096)], q); e >= 0 {
							add(s, s+e)
						}
					}
				}
			}
		case '!':
			if i+1 < len(b) && b[i+1] == '[' {
				if e := bytes.Index(b[i+2:min(len(b), i+2+2048)], []byte("](")); e >= 0 {
					add(i+2, i+2+e)
				}
			}
		case '[':
			// markdown comments: [//]: # (text)   [comment]: <> (text)
			if (hasPrefixFold(b, i, "[//]:") || hasPrefixFold(b, i, "[comment]:")) && (i == 0 || b[i-1] == '\n') {
				e := bytes.IndexByte(b[i:], '\n')
				if e < 0 {
					e = len(b) - i
				}
				add(i, i+e)
			}
		}
	}
	return out
}

func indexFold(b []byte, s string) int {
	for i := 0; i+len(s) <= len(b); i++ {
		if hasPrefixFold(b, i, s) {
			return i
		}
	}
	return -1
}

func invisibleStyle(tag []byte) bool {
	if indexFold(tag, " hidden") >= 0 && indexFold(tag, "hidden=") < 0 && indexFold(tag, "type=\"hidden\"") < 0 {
		return true
	}
	k := indexFold(tag, "style=")
	if k < 0 {
		return false
	}
	st := tag[k:]
	compact := make([]byte, 0, len(st))
	for _, c := range st {
		if c != ' ' {
			if c >= 'A' && c <= 'Z' {
				c += 32
			}
			compact = append(compact, c)
		}
	}
	for _, p := range [...]string{"display:none", "visibility:hidden", "font-size:0", "opacity:0", "color:white", "color:#fff", "color:transparent", "height:0", "width:0", "left:-9999", "text-indent:-9999"} {
		if bytes.Contains(compact, []byte(p)) {
			return true
		}
	}
	return false
}

// ---- encoded blobs ----

// forBlobs calls fn for runs that look like base64 (at least
// minEncodedBlob characters with upper, lower and digits or padding) or
// hex (at least 32 hex digits, even). fn returns false to stop.
func forBlobs(b []byte, fn func(s, e int, isHex bool) bool) {
	for i := 0; i < len(b); {
		if b64class[b[i]] == 0 {
			i++
			continue
		}
		j := i
		var seen uint8
		for j < len(b) {
			k := b64class[b[j]]
			if k == 0 {
				if b[j] == '=' && j > i {
					for j < len(b) && b[j] == '=' { // padding ends the blob
						j++
					}
				}
				break
			}
			seen |= k
			j++
		}
		n := j - i
		hx := seen&(cNotHex|cOther) == 0
		switch {
		case n >= 32 && hx && n%2 == 0 && seen&cDig != 0:
			if !fn(i, j, true) {
				return
			}
		case n >= minEncodedBlob && seen&cUp != 0 && seen&cLo != 0 && (seen&cDig != 0 || b[j-1] == '='):
			if !fn(i, j, false) {
				return
			}
		}
		i = j
	}
}

const (
	cUp uint8 = 1 << iota
	cLo
	cDig
	cNotHex // a letter beyond f
	cOther  // + / - _
)

var b64class = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		switch {
		case c >= 'A' && c <= 'Z':
			t[c] = cUp
			if c > 'F' {
				t[c] |= cNotHex
			}
		case c >= 'a' && c <= 'z':
			t[c] = cLo
			if c > 'f' {
				t[c] |= cNotHex
			}
		case c >= '0' && c <= '9':
			t[c] = cDig
		case c == '+' || c == '/' || c == '-' || c == '_':
			t[c] = cOther
		}
	}
	return t
}()

func decodeBase64(dst, blob []byte) ([]byte, bool) {
	s := bytes.TrimRight(blob, "=")
	enc := base64.RawStdEncoding
	if bytes.ContainsAny(s, "-_") {
		enc = base64.RawURLEncoding
	}
	if len(s)%4 == 1 {
		s = s[:len(s)-1]
	}
	need := enc.DecodedLen(len(s))
	if need > maxDecoded {
		s = s[:maxDecoded*4/3&^3]
		need = enc.DecodedLen(len(s))
	}
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	dst = dst[:need]
	n, err := enc.Decode(dst, s)
	return dst[:n], err == nil
}

func decodeHex(dst, blob []byte) ([]byte, bool) {
	if len(blob)/2 > maxDecoded {
		blob = blob[:maxDecoded*2]
	}
	need := len(blob) / 2
	if cap(dst) < need {
		dst = make([]byte, need)
	}
	dst = dst[:need]
	n, err := hex.Decode(dst, blob)
	return dst[:n], err == nil
}

// printable reports whether b is mostly text (≥ 90 % printable ASCII or
// whitespace, or valid multi-byte UTF-8) and contains a space.
func printable(b []byte) bool {
	if len(b) < 12 {
		return false
	}
	ok, space := 0, false
	for _, c := range b {
		switch {
		case c == ' ':
			space = true
			ok++
		case c >= 0x20 && c < 0x7f, c == '\n', c == '\r', c == '\t', c >= 0x80:
			ok++
		}
	}
	return space && ok*10 >= len(b)*9
}

// unescapeJSON resolves JSON string escapes (\n, \", \uXXXX with
// surrogate pairs) in text that quotes JSON; a backslash that starts no
// valid escape stays as it is.
func unescapeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if b[i] != '\\' {
			out = append(out, b[i])
			i++
			continue
		}
		r, n := jsonstr.Escape(b[i:])
		if n == 0 {
			out = append(out, b[i])
			i++
			continue
		}
		out = utf8.AppendRune(out, r)
		i += n
	}
	return out
}

// stripInvisible removes zero-width, bidi and tag characters.
func stripInvisible(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if !(isZeroWidth(r) || isBidi(r) || r >= 0xE0000 && r <= 0xE007F) {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}
