package sse

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// event is what a client dispatches, or a comment-only event ("-").
type event struct{ name, data, raw string }

func readAll(t *testing.T, stream string, max int, content bool) ([]event, error) {
	t.Helper()
	r := NewReader(strings.NewReader(stream), max)
	defer r.Release()
	var got []event
	for {
		next := r.Next
		if content {
			next = r.NextContent
		}
		if err := next(); err != nil {
			return got, err
		}
		data := string(r.Data)
		if !r.HasData {
			data = "-"
		}
		got = append(got, event{string(r.Name), data, string(r.Raw)})
	}
}

func TestReader(t *testing.T) {
	big := strings.Repeat("x", 40000)
	for _, tc := range []struct {
		name, stream string
		max          int
		content      bool // NextContent: comment-only events skipped
		want         []event
		end          error
	}{
		{name: "fields and line ends",
			stream: ": comment\n\n" +
				"id: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n" +
				"event: prime\nid: 2\ndata\n\n" +
				"data:no space\n\n",
			want: []event{
				{"", "-", ": comment\n\n"},
				{"message", "{\"a\":\n1}", "id: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n"},
				{"prime", "", "event: prime\nid: 2\ndata\n\n"},
				{"", "no space", "data:no space\n\n"},
			},
			end: io.EOF},
		{name: "comment-only events skipped by NextContent", content: true,
			stream: ": ping\n\n: ping\n\ndata: a\n\nevent: x\n\n",
			want:   []event{{"", "a", "data: a\n\n"}, {"x", "-", "event: x\n\n"}},
			end:    io.EOF},
		{name: "blank lines between events are not events",
			stream: "\n\r\n\ndata: a\n\n\n\ndata: b\n\n",
			want:   []event{{"", "a", "data: a\n\n"}, {"", "b", "data: b\n\n"}},
			end:    io.EOF},
		{name: "an event longer than the buffer", stream: "data: " + big + "\n\n",
			want: []event{{"", big, "data: " + big + "\n\n"}}, end: io.EOF},
		{name: "cut short", stream: "data: a\n\ndata: cut",
			want: []event{{"", "a", "data: a\n\n"}}, end: io.ErrUnexpectedEOF},
		{name: "cut short after a whole line", stream: "data: a\n",
			end: io.ErrUnexpectedEOF},
		{name: "white space after the last event is a clean end", stream: "data: a\n\n  \t",
			want: []event{{"", "a", "data: a\n\n"}}, end: io.EOF},
		{name: "a leading byte-order mark is dropped, as clients do",
			stream: "\xef\xbb\xbfdata: a\n\n",
			want:   []event{{"", "a", "data: a\n\n"}}, end: io.EOF},
		{name: "a byte-order mark later is part of a field name",
			stream: "data: a\n\nid: 1\n\xef\xbb\xbfdata: b\n\n",
			want:   []event{{"", "a", "data: a\n\n"}, {"", "-", "id: 1\n\xef\xbb\xbfdata: b\n\n"}}, end: io.EOF},
		// Relayed first in a stream, the event's mark would be skipped and
		// its data read: a message nothing here inspected.
		{name: "a byte-order mark that starts a later event",
			stream: "data: a\n\n\xef\xbb\xbfdata: b\n\n",
			want:   []event{{"", "a", "data: a\n\n"}}, end: ErrMalformed},
		{name: "a byte-order mark after blank lines", stream: "\n\xef\xbb\xbfdata: b\n\n", end: ErrMalformed},
		{name: "a second byte-order mark", stream: "\xef\xbb\xbf\xef\xbb\xbfdata: b\n\n", end: ErrMalformed},
		{name: "a bare CR inside a line: a client reads two lines",
			stream: "data: {}\r\rdata: hidden\n\n", end: ErrMalformed},
		{name: "a bare CR ending a line", stream: "data: a\n\ndata: b\r", want: []event{{"", "a", "data: a\n\n"}},
			end: ErrMalformed},
		{name: "a bare CR ending the stream: a client reads a blank line", stream: "data: a\n\r",
			end: ErrMalformed},
		{name: "bare CRs in the last, unended line: a client reads a whole event",
			stream: "data: a\n\ndata: b\r\r", want: []event{{"", "a", "data: a\n\n"}}, end: ErrMalformed},
		{name: "a bare CR before the event's end", stream: "data: a\rdata: b\n\n", end: ErrMalformed},
		{name: "too large", stream: "data: " + strings.Repeat("y", 5000) + "\n\n", max: 1000, end: ErrEventTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1 << 20
			}
			got, err := readAll(t, tc.stream, max, tc.content)
			if !errors.Is(err, tc.end) {
				t.Errorf("end %v, want %v", err, tc.end)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("events %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestWithData(t *testing.T) {
	r := NewReader(strings.NewReader("id: 9\r\nevent: message\ndata: old\ndata: more\nretry: 5\n\n"), 1<<10)
	defer r.Release()
	if err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if out := string(r.WithData([]byte("new\nlines"))); out != "id: 9\r\nevent: message\nretry: 5\ndata: new\ndata: lines\n\n" {
		t.Fatalf("rewritten %q", out)
	}
}

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"", "{}", "data: {}\n\n"},
		{"error", `{"a":1}`, "event: error\ndata: {\"a\":1}\n\n"},
		{"", "", "data: \n\n"},
		{"message", "a\nb", "event: message\ndata: a\ndata: b\n\n"},
		// Every line end splits, so a value never holds one a client would see.
		{"", "a\r\nb\rc\n", "data: a\ndata: b\ndata: c\ndata: \n\n"},
	} {
		if got := string(AppendEvent(nil, tc.name, []byte(tc.data))); got != tc.want {
			t.Errorf("AppendEvent(%q, %q) = %q, want %q", tc.name, tc.data, got, tc.want)
		}
		// What it writes reads back as written (data lines joined by "\n").
		r := NewReader(strings.NewReader(string(AppendEvent(nil, tc.name, []byte(tc.data)))), 1<<10)
		if err := r.Next(); err != nil {
			t.Fatal(err)
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tc.data)
		if string(r.Data) != want || string(r.Name) != tc.name {
			t.Errorf("read back %q %q, want %q %q", r.Name, r.Data, tc.name, want)
		}
		r.Release()
	}
}
