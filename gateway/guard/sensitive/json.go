package sensitive

import (
	"sync"

	"github.com/mandatehq/mandate/gateway/guard"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// JSON documents (tool arguments, structuredContent, response bodies) are
// scanned string by string: every member name, string value and number is
// decoded (escapes resolved) and scanned on its own, and a string value
// whose member name is secret-looking (password, api_key, …) is tested as
// a secret as a whole. Masking re-encodes only the strings that change;
// the rest of the document is copied byte for byte. A masked number
// becomes a string ("<CREDIT_CARD_1>"): the document stays valid JSON but
// that member's type changes.

type jsonScan struct {
	d     *Detector
	w     jsonwalk.Walker
	dst   []Finding
	local []Finding
	offs  []int
	raw   []byte
	// masking
	mc    *MaskContext
	phase guard.Phase
	out   []byte
	last  int
	tmp   []byte
	mask  bool
}

var jsonScans = sync.Pool{New: func() any { return new(jsonScan) }}

func (s *jsonScan) Visit(t *jsonwalk.Token) error {
	fs := s.d.Find(s.local[:0], t.Value)
	if t.Kind == jsonwalk.String && t.Key != nil && s.d.has(kSecret) && len(t.Value) >= 8 && SecretAssignment(t.Key, t.Value) {
		covered := false
		for _, f := range fs {
			if f.Start == 0 && f.End == len(t.Value) {
				covered = true
			}
		}
		if !covered {
			fs = append(fs[:0], Finding{Entity: Secret, Rule: "assignment", Start: 0, End: len(t.Value)})
		}
	}
	s.local = fs
	if len(fs) == 0 {
		return nil
	}
	// report with offsets in the raw document
	if t.Escaped {
		s.offs = s.offs[:0]
		for _, f := range fs {
			s.offs = append(s.offs, f.Start, f.End)
		}
		jsonwalk.RawOffsets(s.raw[t.Start+1:t.End-1], s.offs)
	}
	for i, f := range fs {
		g := f
		switch {
		case t.Kind == jsonwalk.Number:
			g.Start, g.End = t.Start+f.Start, t.Start+f.End
		case !t.Escaped:
			g.Start, g.End = t.Start+1+f.Start, t.Start+1+f.End
		default:
			g.Start, g.End = t.Start+1+s.offs[2*i], t.Start+1+s.offs[2*i+1]
		}
		s.dst = append(s.dst, g)
	}
	if s.mask {
		if s.out == nil {
			s.out = make([]byte, 0, len(s.raw)+64)
		}
		s.out = append(s.out, s.raw[s.last:t.Start]...)
		s.tmp = s.mc.Mask(s.tmp[:0], t.Value, fs, s.phase)
		s.out = jsonwalk.AppendString(s.out, s.tmp)
		s.last = t.End
	}
	return nil
}

func (d *Detector) walkJSON(dst []Finding, raw []byte, mc *MaskContext, phase guard.Phase) ([]Finding, []byte, error) {
	return d.walkDoc(dst, raw, nil, mc, phase)
}

// walkDoc scans raw, or the walk doc replays when doc is not nil (raw is
// then doc.Raw()).
func (d *Detector) walkDoc(dst []Finding, raw []byte, doc *jsonwalk.Doc, mc *MaskContext, phase guard.Phase) ([]Finding, []byte, error) {
	s := jsonScans.Get().(*jsonScan)
	s.d, s.dst, s.raw, s.mc, s.phase, s.mask, s.out, s.last = d, dst, raw, mc, phase, mc != nil, nil, 0
	var err error
	if doc != nil {
		err = doc.Each(s)
	} else {
		err = s.w.Walk(raw, s)
	}
	dst, out := s.dst, s.out
	if out != nil {
		out = append(out, raw[s.last:]...)
	}
	s.d, s.dst, s.raw, s.mc, s.out = nil, nil, nil, nil, nil
	if cap(s.tmp) > 64<<10 {
		s.tmp = nil
	}
	jsonScans.Put(s)
	if err != nil {
		return dst, nil, err
	}
	return dst, out, nil
}

// FindJSON appends the findings in the JSON document raw to dst, with byte
// ranges in raw. Malformed JSON is an error (and the caller should fail
// closed).
func (d *Detector) FindJSON(dst []Finding, raw []byte) ([]Finding, error) {
	dst, _, err := d.walkJSON(dst, raw, nil, 0)
	return dst, err
}

// MaskJSON returns raw with every finding masked inside its string (or
// number), and the findings (ranges in raw). It returns raw itself when
// nothing was found.
func (d *Detector) MaskJSON(mc *MaskContext, phase guard.Phase, raw []byte) ([]byte, []Finding, error) {
	fs, out, err := d.walkJSON(nil, raw, mc, phase)
	if err != nil {
		return nil, fs, err
	}
	if out == nil {
		return raw, fs, nil
	}
	return out, fs, nil
}

// RestoreJSON restores placeholders inside the strings of a JSON document
// (a model's JSON answer, tool-call arguments it generated). It returns raw
// itself when nothing was restored.
func (mc *MaskContext) RestoreJSON(raw []byte) ([]byte, error) {
	w := jsonwalk.Get()
	defer jsonwalk.Put(w)
	var out []byte
	last := 0
	err := w.Walk(raw, jsonwalk.Func(func(t *jsonwalk.Token) error {
		if t.Kind == jsonwalk.Number {
			return nil
		}
		r := mc.Restore(t.Value)
		if len(r) == len(t.Value) && (len(r) == 0 || &r[0] == &t.Value[0]) {
			return nil
		}
		if out == nil {
			out = make([]byte, 0, len(raw)+64)
		}
		out = append(out, raw[last:t.Start]...)
		out = jsonwalk.AppendString(out, r)
		last = t.End
		return nil
	}))
	if err != nil {
		return nil, err
	}
	if out == nil {
		return raw, nil
	}
	return append(out, raw[last:]...), nil
}
