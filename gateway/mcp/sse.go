package mcp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// sseReader reads server-sent events from an upstream response, one whole
// event at a time, keeping the event's raw bytes so that it can be relayed
// exactly as received. Lines end in "\n" or "\r\n".
type sseReader struct {
	br   *bufio.Reader
	max  int
	raw  []byte // the event's lines, blank line included
	data []byte // the event's data field values joined with "\n"
	// name is the event's "event" field ("" = message).
	name    []byte
	hasData bool
}

var errEventTooLarge = errors.New("server-sent event too large")

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

func newSSEReader(r io.Reader, max int) *sseReader {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(r)
	return &sseReader{br: br, max: max}
}

func (s *sseReader) release() {
	s.br.Reset(nil)
	readerPool.Put(s.br)
	s.br = nil
}

// message reports whether the event carries a JSON-RPC message: it has
// data and is of the default type "message".
func (s *sseReader) message() bool {
	return s.hasData && len(s.data) > 0 && (len(s.name) == 0 || string(s.name) == "message")
}

// next reads one event. An event cut short by the end of the stream is
// dropped (as the SSE spec says): next returns io.ErrUnexpectedEOF; a
// clean end is io.EOF.
func (s *sseReader) next() error {
	s.raw, s.data, s.name, s.hasData = s.raw[:0], s.data[:0], s.name[:0], false
	for {
		start := len(s.raw)
		for {
			chunk, err := s.br.ReadSlice('\n')
			s.raw = append(s.raw, chunk...)
			if len(s.raw) > s.max {
				return errEventTooLarge
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil {
				if err == io.EOF && len(s.raw) > 0 {
					return io.ErrUnexpectedEOF
				}
				return err
			}
			break
		}
		line := s.raw[start:]
		line = line[:len(line)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			return nil // blank line: the event is complete
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
			if s.hasData {
				s.data = append(s.data, '\n')
			}
			s.data = append(s.data, value...)
			s.hasData = true
		case "event":
			s.name = append(s.name[:0], value...)
		}
	}
}

// withData returns the current event with its data replaced by data: the
// other fields as received, then data as data lines.
func (s *sseReader) withData(data []byte) []byte {
	out := make([]byte, 0, len(s.raw)-len(s.data)+len(data)+16)
	rest := s.raw
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
	for _, l := range bytes.Split(data, []byte("\n")) {
		out = append(out, "data: "...)
		out = append(out, l...)
		out = append(out, '\n')
	}
	return append(out, '\n')
}
