package sse

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// whatwg is a reference reader written from the event-stream
// interpretation rules of the WHATWG HTML standard (§9.2.6), kept small
// enough to check by eye. It returns the events a browser's EventSource
// dispatches (name "" for the default type, message). It reads bytes, not
// decoded text: a UTF-8 decoder replaces an invalid sequence without
// consuming the ASCII byte after it, so no line end or colon moves.
func whatwg(stream []byte) []event {
	stream = bytes.TrimPrefix(stream, bom)
	var events []event
	var data, name []byte
	for len(stream) > 0 {
		// A line ends at CRLF, LF or CR; a line at the end of the stream
		// without one is discarded with the pending event.
		i := bytes.IndexAny(stream, "\r\n")
		if i < 0 {
			break
		}
		line := stream[:i]
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
		if len(line) == 0 { // dispatch
			if len(data) > 0 {
				d := bytes.TrimSuffix(data, []byte("\n"))
				events = append(events, event{name: string(name), data: string(d)})
			}
			data, name = data[:0], name[:0]
			continue
		}
		if line[0] == ':' {
			continue // comment
		}
		field, value := line, []byte(nil)
		if j := bytes.IndexByte(line, ':'); j >= 0 {
			field, value = line[:j], line[j+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			name = append(name[:0], value...)
		case "data":
			data = append(append(data, value...), '\n')
		}
	}
	return events
}

// bareCR reports whether b holds a carriage return not followed by a line
// feed: where the standard's line ends and a line-feed reader's differ.
func bareCR(b []byte) bool {
	for i, c := range b {
		if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
			return true
		}
	}
	return false
}

// readEvents reads stream with a Reader: the dispatched events (those
// with data), and every event's raw bytes with the events read from them.
func readEvents(stream []byte, max int) (events []event, raws []rawEvent, err error) {
	r := NewReader(bytes.NewReader(stream), max)
	defer r.Release()
	for {
		if err = r.Next(); err != nil {
			return events, raws, err
		}
		if len(r.Raw) == 0 || r.Raw[len(r.Raw)-1] != '\n' {
			panic("an event's raw bytes do not end its last line")
		}
		var ev []event
		if r.HasData {
			ev = []event{{name: string(r.Name), data: string(r.Data)}}
			events = append(events, ev[0])
		}
		raws = append(raws, rawEvent{raw: bytes.Clone(r.Raw), events: ev})
	}
}

// rawEvent is one event's raw bytes and what was read from them.
type rawEvent struct {
	raw    []byte
	events []event
}

func sameEvents(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzReader: for every stream the Reader accepts, it yields the events
// the standard's rules yield; a stream it refuses holds a bare CR in the
// event it refused, where the rules and a line-feed reader read
// different lines; the raw bytes it keeps (what the relays send on) read
// back as the same events.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		": comment\n\nid: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n",
		"event: prime\nid: 2\ndata\n\ndata:no space\n\n",
		"\n\r\n\ndata: a\n\n\n\ndata: b\n\n",
		"data: a\n\ndata: cut",
		"data: a\n\n  \t",
		"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n",
		"data: {}\r\rdata: hidden\n\n",
		"data: a\n\ndata: b\r",
		"event: x\n\nevent: y\ndata: 1\nevent:\n\n",
		"data:  two spaces\ndata:\ndata\n\n",
		"retry: 10\nid\x00: 3\n:\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n",
		"data: [DONE]\n\ndata: [DONE]\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		got, raws, err := readEvents(stream, 1<<20)
		switch {
		case errors.Is(err, ErrMalformed):
			// The refused event starts after the raw bytes of the ones
			// read (and the blank lines between them).
			rest := bytes.TrimPrefix(stream, bom)
			if !bareCR(rest) && !bytes.Contains(rest, bom) {
				t.Fatalf("%q refused, but it holds no bare CR and no byte-order mark", stream)
			}
			if !sameEvents(got, whatwg(stream)[:min(len(got), len(whatwg(stream)))]) {
				t.Fatalf("%q: events before the refusal %q, the standard's %q", stream, got, whatwg(stream))
			}
			return
		case err == io.EOF, err == io.ErrUnexpectedEOF:
		default:
			t.Fatalf("%q: %v", stream, err)
		}
		if want := whatwg(stream); !sameEvents(got, want) {
			t.Fatalf("%q: Reader %q, the standard %q", stream, got, want)
		}
		// What a relay sends on, an event's raw bytes, reads back the same
		// wherever it lands in the client's stream (first, or after others).
		var all []byte
		for _, r := range raws {
			all = append(all, r.raw...)
			if again := whatwg(r.raw); !sameEvents(again, r.events) {
				t.Fatalf("%q: raw event %q, sent first, reads as %q, not %q", stream, r.raw, again, r.events)
			}
		}
		again, _, err := readEvents(all, 1<<20)
		if err != io.EOF {
			t.Fatalf("%q: its raw events %q read back with %v", stream, all, err)
		}
		if !sameEvents(again, got) || !sameEvents(whatwg(all), got) {
			t.Fatalf("%q: raw events read back as %q, not %q", stream, again, got)
		}
	})
}

// FuzzWrite: what AppendEvent writes, and an event rewritten by WithData,
// read back as written (data's line ends as "\n"), under the reference
// rules too.
func FuzzWrite(f *testing.F) {
	f.Add("", []byte("{}"), []byte("id: 9\r\nevent: message\ndata: old\ndata: more\nretry: 5\n\n"))
	f.Add("error", []byte("a\r\nb\rc\n"), []byte("data: x\n\n"))
	f.Add("message", []byte(""), []byte(": c\ndata\n\n"))
	f.Add("content_block_delta", []byte("\r\r\n\n"), []byte("event: e\r\ndata: 1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, name string, data, ev []byte) {
		if bytes.ContainsAny([]byte(name), "\r\n") {
			return // names are the gateway's constants, never upstream text
		}
		want := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
		check := func(what string, out []byte, name string) {
			t.Helper()
			got, _, err := readEvents(out, 1<<20)
			if err != io.EOF || len(got) != 1 || got[0] != (event{name: name, data: string(want)}) {
				t.Fatalf("%s %q read back as %q (%v), want %q %q", what, out, got, err, name, want)
			}
			if ref := whatwg(out); !sameEvents(ref, got) {
				t.Fatalf("%s %q: the standard reads %q", what, out, ref)
			}
		}
		check("AppendEvent", AppendEvent(nil, name, data), name)

		r := NewReader(bytes.NewReader(ev), 1<<20)
		defer r.Release()
		if err := r.Next(); err != nil || !r.HasData {
			return
		}
		check("WithData", r.WithData(data), string(r.Name))
	})
}
