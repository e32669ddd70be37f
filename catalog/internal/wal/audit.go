package wal

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// Audit events (the audit pipeline's batches, tens of thousands of events
// per second) are encoded in a compact binary form instead of JSON, which
// costs several microseconds per event. A binary audit body starts with
// AuditMagic:
//
//	AuditMagic, uvarint event count, then per event in AuditEvent field
//	order: each string as uvarint length + bytes; Time as varint Unix
//	microseconds (UTC); StatusCode, Revision as varints; LatencyMs as the
//	8 little-endian bytes of its IEEE 754 bits.
//
// A body holding completions (AuditEvent.Completes) starts with
// AuditMagic2 instead, and each event ends with one flags byte (bit 0:
// Completes); bodies without completions keep the first form, which
// older versions read.
const (
	AuditMagic  = 0xA1
	AuditMagic2 = 0xA2
)

// flagCompletes is bit 0 of an event's flags byte (AuditMagic2).
const flagCompletes = 1

// maxAuditEvents bounds the count of a binary audit record (a corrupt
// count must not allocate gigabytes; the body bounds it anyway).
const maxAuditEvents = 1 << 24

var errAuditBody = errors.New("malformed binary audit record")

// IsAudit reports whether body is a binary audit body.
func IsAudit(body []byte) bool {
	return len(body) > 0 && (body[0] == AuditMagic || body[0] == AuditMagic2)
}

// AppendAudit appends the binary body of events to buf.
func AppendAudit(buf []byte, events []catalog.AuditEvent) []byte {
	magic := byte(AuditMagic)
	for i := range events {
		if events[i].Completes {
			magic = AuditMagic2
			break
		}
	}
	buf = append(buf, magic)
	buf = binary.AppendUvarint(buf, uint64(len(events)))
	for i := range events {
		e := &events[i]
		buf = appendString(buf, e.EventID)
		buf = binary.AppendVarint(buf, e.Time.UnixMicro())
		for _, s := range [...]string{e.Service, e.Action, e.UserIdentity, e.RunBy, e.RunAs, e.SourceIP, e.UserAgent,
			e.SessionID, e.RequestID, e.SecurableType, e.SecurableName, e.RequestParams} {
			buf = appendString(buf, s)
		}
		buf = binary.AppendVarint(buf, int64(e.StatusCode))
		for _, s := range [...]string{e.ErrorMessage, e.SQLState, e.Decision, e.Reason} {
			buf = appendString(buf, s)
		}
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(e.LatencyMs))
		buf = binary.AppendVarint(buf, int64(e.Revision))
		if magic == AuditMagic2 {
			var flags byte
			if e.Completes {
				flags |= flagCompletes
			}
			buf = append(buf, flags)
		}
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// AuditSize estimates the encoded size of events (for preallocation).
func AuditSize(events []catalog.AuditEvent) int {
	n := 1 + binary.MaxVarintLen64
	for i := range events {
		e := &events[i]
		n += 1 + 17*2 + 4*binary.MaxVarintLen64 + 8 + len(e.EventID) + len(e.Service) + len(e.Action) + len(e.UserIdentity) +
			len(e.RunBy) + len(e.RunAs) + len(e.SourceIP) + len(e.UserAgent) + len(e.SessionID) + len(e.RequestID) +
			len(e.SecurableType) + len(e.SecurableName) + len(e.RequestParams) + len(e.ErrorMessage) + len(e.SQLState) +
			len(e.Decision) + len(e.Reason)
	}
	return n
}

// DecodeAudit decodes a binary audit body (starting with AuditMagic or
// AuditMagic2).
func DecodeAudit(b []byte) ([]catalog.AuditEvent, error) {
	if !IsAudit(b) {
		return nil, errAuditBody
	}
	flags := b[0] == AuditMagic2
	d := auditDecoder{b: b[1:]}
	n := d.uvarint()
	if d.err != nil || n > maxAuditEvents || n > uint64(len(d.b)) {
		return nil, errAuditBody
	}
	events := make([]catalog.AuditEvent, n)
	for i := range events {
		e := &events[i]
		e.EventID = d.str()
		e.Time = time.UnixMicro(d.varint()).UTC()
		for _, p := range [...]*string{&e.Service, &e.Action, &e.UserIdentity, &e.RunBy, &e.RunAs, &e.SourceIP,
			&e.UserAgent, &e.SessionID, &e.RequestID, &e.SecurableType, &e.SecurableName, &e.RequestParams} {
			*p = d.str()
		}
		st := d.varint()
		if st != int64(int(st)) {
			d.err = errAuditBody
		}
		e.StatusCode = int(st)
		for _, p := range [...]*string{&e.ErrorMessage, &e.SQLState, &e.Decision, &e.Reason} {
			*p = d.str()
		}
		if len(d.b) < 8 {
			d.err = errAuditBody
		} else {
			e.LatencyMs = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
			d.b = d.b[8:]
		}
		e.Revision = catalog.Revision(d.varint())
		if flags && d.err == nil {
			switch {
			case len(d.b) < 1 || d.b[0]&^flagCompletes != 0:
				d.err = errAuditBody
			default:
				e.Completes = d.b[0]&flagCompletes != 0
				d.b = d.b[1:]
			}
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.b) != 0 {
		return nil, errAuditBody
	}
	return events, nil
}

// auditDecoder reads a binary audit body; the first error sticks.
type auditDecoder struct {
	b   []byte
	err error
}

func (d *auditDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errAuditBody
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errAuditBody
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *auditDecoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errAuditBody
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
