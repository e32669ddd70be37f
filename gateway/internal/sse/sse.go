// Package sse reads and writes server-sent events (the text/event-stream
// format of the WHATWG HTML standard) for the gateway's relays.
//
// A relay inspects an event as this package parses it and sends the
// client the event's bytes as received (Reader.Raw), so the parse must be
// the one every client makes of those bytes. The Reader therefore
// refuses what clients read differently from a line-feed parser rather
// than guessing: a carriage return that does not end a line with a line
// feed (the standard makes a lone CR a line end too) is ErrMalformed. A
// byte-order mark before the first event, which clients skip, is dropped;
// one that starts a later event is ErrMalformed too: here it is part of a
// field name, but a client that gets the event first in its stream skips
// it and reads the field. Every event is bounded (ErrEventTooLarge).
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

var (
	// ErrEventTooLarge: an event is longer than the Reader's bound.
	ErrEventTooLarge = errors.New("server-sent event too large")
	// ErrMalformed: an event a client could read otherwise (a bare CR, a
	// byte-order mark that starts it).
	ErrMalformed = errors.New("server-sent event with a bare carriage return or a byte-order mark")
)

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

var bom = []byte("\xef\xbb\xbf")

// Reader reads server-sent events one whole event at a time, keeping
// each event's raw bytes. Its fields describe the event the last Next
// read and are valid until the next call.
type Reader struct {
	br      *bufio.Reader
	max     int
	started bool
	// Raw is the event's lines as received, the blank line that ends it
	// included (no blank lines before it).
	Raw []byte
	// Data is the values of its data fields joined with "\n".
	Data []byte
	// Name is its event field ("" is the default type, message).
	Name []byte
	// HasData is true when it had at least one data field.
	HasData bool
}

// NewReader reads events of at most max bytes each from r. Release
// returns its buffer.
func NewReader(r io.Reader, max int) *Reader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &Reader{br: br, max: max}
}

// Release returns the Reader's buffer; the Reader is not used after.
func (s *Reader) Release() {
	if s.br != nil {
		s.br.Reset(nil)
		readerPool.Put(s.br)
		s.br = nil
	}
}

// Next reads the next event, a comment-only one (a keep-alive) included.
// An event cut short by the end of the stream is io.ErrUnexpectedEOF (a
// client drops it too); a clean end, nothing but white space after the
// last event, is io.EOF.
func (s *Reader) Next() error {
	s.Raw, s.Data, s.Name, s.HasData = s.Raw[:0], s.Data[:0], s.Name[:0], false
	if !s.started {
		s.started = true
		if b, err := s.br.Peek(len(bom)); err == nil && bytes.Equal(b, bom) {
			_, _ = s.br.Discard(len(bom))
		}
	}
	for {
		start := len(s.Raw)
		for {
			chunk, err := s.br.ReadSlice('\n')
			s.Raw = append(s.Raw, chunk...)
			if len(s.Raw) > s.max {
				return ErrEventTooLarge
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF {
					if len(bytes.Trim(s.Raw, " \t\r\n")) > 0 {
						// A CR in the last line, which no LF ends, is a
						// bare one: a client may read an event's end there.
						if bytes.IndexByte(s.Raw[start:], '\r') >= 0 {
							return ErrMalformed
						}
						return io.ErrUnexpectedEOF
					}
					return io.EOF
				}
				return err
			}
			break
		}
		line := s.Raw[start : len(s.Raw)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if bytes.IndexByte(line, '\r') >= 0 || start == 0 && bytes.HasPrefix(line, bom) {
			return ErrMalformed
		}
		if len(line) == 0 {
			if start == 0 {
				s.Raw = s.Raw[:0] // a blank line between events
				continue
			}
			return nil
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if s.HasData {
				s.Data = append(s.Data, '\n')
			}
			s.Data = append(s.Data, value...)
			s.HasData = true
		case "event":
			s.Name = append(s.Name[:0], value...)
		}
	}
}

// NextContent reads the next event that has data or a name, skipping
// comment-only ones.
func (s *Reader) NextContent() error {
	for {
		if err := s.Next(); err != nil || s.HasData || len(s.Name) > 0 {
			return err
		}
	}
}

// WithData returns the current event with its data replaced by data: its
// other fields as received, then data as data lines.
func (s *Reader) WithData(data []byte) []byte {
	out := make([]byte, 0, len(s.Raw)-len(s.Data)+len(data)+16)
	rest := s.Raw
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i+1]
		rest = rest[i+1:]
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			break // the blank line ends the event
		}
		if bytes.Equal(content, []byte("data")) || bytes.HasPrefix(content, []byte("data:")) {
			continue
		}
		out = append(out, line...)
	}
	return append(appendData(out, data), '\n')
}

// AppendEvent appends an event of type name ("" for the default) with
// data to dst.
func AppendEvent(dst []byte, name string, data []byte) []byte {
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	return append(appendData(dst, data), '\n')
}

// appendData appends data as data lines: one per line of data, split at
// CRLF, LF and CR alike, so that no field value holds a line end.
func appendData(dst, data []byte) []byte {
	for {
		i := bytes.IndexAny(data, "\r\n")
		dst = append(dst, "data: "...)
		if i < 0 {
			return append(append(dst, data...), '\n')
		}
		dst = append(append(dst, data[:i]...), '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}
