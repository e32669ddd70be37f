package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// A forwarded-statements request is authentic only with the
// installation's MAC over its time, id and body, within the allowed clock
// skew; each id runs once.
func TestWriterRequestAuthentic(t *testing.T) {
	w := &replicaWriter{key: writerKey([]byte("master key of this installation")), seen: map[string]time.Time{}}
	other := &replicaWriter{key: writerKey([]byte("master key of another one"))}
	body := []byte(`{"via":"r2","changes":[]}`)
	id := strings.Repeat("ab", 16)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	header := func(w *replicaWriter, ts, id string, body []byte) string {
		return ts + "." + id + "." + w.mac("request", ts, id, body)
	}
	if ts, gotID, ok := w.authentic(header(w, now, id, body), body); !ok || ts != now || gotID != id {
		t.Fatalf("authentic request refused: %q %q %v", ts, gotID, ok)
	}
	for name, h := range map[string]string{
		"no header":           "",
		"another key":         header(other, now, id, body),
		"another body":        header(w, now, id, []byte(`{"via":"r2","changes":[{}]}`)),
		"an answer's MAC":     now + "." + id + "." + w.mac("answer", now, id, body),
		"too old":             header(w, strconv.FormatInt(time.Now().Add(-2*writerSkew).Unix(), 10), id, body),
		"from the future":     header(w, strconv.FormatInt(time.Now().Add(2*writerSkew).Unix(), 10), id, body),
		"short id":            header(w, now, "abcd", body),
		"malformed":           "x.y",
		"MAC of another id":   now + "." + strings.Repeat("cd", 16) + "." + w.mac("request", now, id, body),
		"MAC of another time": "1." + id + "." + w.mac("request", now, id, body),
	} {
		if _, _, ok := w.authentic(h, body); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if !w.firstUse(id) {
		t.Fatal("first use of an id refused")
	}
	if w.firstUse(id) {
		t.Fatal("a replayed id accepted")
	}
	if !w.firstUse(strings.Repeat("ef", 16)) {
		t.Fatal("another id refused")
	}
}
