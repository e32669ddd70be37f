package llmgw

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog"
)

// HeaderTags carries a call's request tags: a JSON object of string
// values, {"project":"checkout"}.
const HeaderTags = "X-Mandate-Request-Tags"

// Bounds of the request tags header (each tag as catalog.ValidTag: keys
// of up to 64 bytes of [A-Za-z0-9_.:/-], values up to 256 bytes).
const (
	MaxTags        = 16
	maxTagsHeader  = 8 << 10
	tagsHeaderHint = `a JSON object of at most 16 string values, e.g. {"project":"checkout"}`
)

// parseTags reads the request tags header (absent: none). Every bound is
// checked: one header, its size, at most MaxTags members, non-empty keys
// of at most MaxTagKey bytes, string values of at most MaxTagValue bytes,
// valid UTF-8, no key twice.
func parseTags(values []string) (map[string]string, error) {
	switch len(values) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("%s must be sent once", HeaderTags)
	}
	v := values[0]
	if len(v) > maxTagsHeader {
		return nil, fmt.Errorf("%s is larger than %d bytes", HeaderTags, maxTagsHeader)
	}
	bad := func(why string) error { return fmt.Errorf("%s: %s; want %s", HeaderTags, why, tagsHeaderHint) }
	if !utf8.ValidString(v) {
		return nil, bad("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, bad("not a JSON object")
	}
	tags := make(map[string]string)
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, bad("not a JSON object")
		}
		k := kt.(string) // object keys are strings
		vt, err := dec.Token()
		if err != nil {
			return nil, bad("not a JSON object")
		}
		val, ok := vt.(string)
		switch {
		case !ok:
			return nil, bad(fmt.Sprintf("the value of %q is not a string", clip(k)))
		case k == "":
			return nil, bad("empty key")
		case len(k) > catalog.MaxTagKey:
			return nil, bad(fmt.Sprintf("key %q is longer than %d bytes", clip(k), catalog.MaxTagKey))
		}
		if err := catalog.ValidTag(k, val); err != nil {
			return nil, fmt.Errorf("%s: %s", HeaderTags, err.Error())
		}
		if _, dup := tags[k]; dup {
			return nil, bad(fmt.Sprintf("key %q appears twice", clip(k)))
		}
		if len(tags) == MaxTags {
			return nil, bad(fmt.Sprintf("more than %d tags", MaxTags))
		}
		tags[k] = val
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("not a JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("trailing data after the object")
	}
	return tags, nil
}

// mergeTags is the call's tags: the header's, then the model service's
// own, which win (a client cannot move its calls out of the project its
// service is attributed to, nor out of a budget's WHERE TAG).
func mergeTags(header, service map[string]string) map[string]string {
	if len(service) == 0 {
		return header
	}
	out := make(map[string]string, len(header)+len(service))
	for k, v := range header {
		out[k] = v
	}
	for k, v := range service {
		out[k] = v
	}
	return out
}

func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
