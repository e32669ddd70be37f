package llm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sync"
)

// sseReader reads server-sent events one whole event at a time, keeping
// the event's raw bytes so that it can be relayed exactly as received.
// Lines end in "\n" or "\r\n" (a lone "\r" is not a line end here; no
// provider sends one).
type sseReader struct {
	br   *bufio.Reader
	max  int
	raw  []byte // the event's lines, blank line included
	data []byte // the data field values joined with "\n"
	name []byte // the event field ("" = message)
	// hasData is true when the event had at least one data field.
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
	if s.br != nil {
		s.br.Reset(nil)
		readerPool.Put(s.br)
		s.br = nil
	}
}

// next reads one event. Comment-only and empty events are skipped. An
// event cut short by the end of the stream is io.ErrUnexpectedEOF; a clean
// end is io.EOF.
func (s *sseReader) next() error {
	for {
		if err := s.read(); err != nil {
			return err
		}
		if s.hasData || len(s.name) > 0 {
			return nil
		}
	}
}

func (s *sseReader) read() error {
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
				if err == io.EOF {
					if len(trimWS(s.raw)) > 0 {
						return io.ErrUnexpectedEOF
					}
					return io.EOF
				}
				return err
			}
			break
		}
		line := s.raw[start : len(s.raw)-1]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if start == 0 {
				s.raw = s.raw[:0] // blank lines between events
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

// appendEvent appends one event (name may be "") with data to dst.
func appendEvent(dst []byte, name string, data []byte) []byte {
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexByte(data, '\n')
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, data...)
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		data = data[i+1:]
	}
	return append(dst, '\n', '\n')
}
