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
// A record holding completions (AuditEvent.Completes) starts with
// AuditMagic2 instead, and each event ends with one flags byte (bit 0:
// Completes); records without completions keep the first form, which
// older versions read.
//
// A record holding an event with trace ids, guardrail outcomes, LLM usage
// or a payload starts with AuditMagic3: every event ends with its flags
// byte (bit 0: Completes; bit 1: TraceID, SpanID, Guardrails follow as
// strings; bit 2: usage follows: ProviderService, Provider, Model,
// RequestTags, Routing as strings, the five token counts and CostNanos as
// varints, TTFTMs as 8 bytes, Streaming as one byte; bit 3: payload
// follows: RequestBody, ResponseBody as strings). Records without such
// events keep the earlier forms, which older versions read.
const (
	AuditMagic  = 0xA1
	AuditMagic2 = 0xA2
	AuditMagic3 = 0xA3
)

// Bits of an event's flags byte (AuditMagic2, AuditMagic3).
const (
	flagCompletes = 1
	flagTrace     = 2 // AuditMagic3 only
	flagUsage     = 4
	flagPayload   = 8
)

// extended reports whether e has fields only AuditMagic3 encodes.
func extended(e *catalog.AuditEvent) bool {
	return e.TraceID != "" || e.SpanID != "" || e.Guardrails != "" || e.Usage != nil || e.Payload != nil
}

// maxAuditEvents bounds the count of a binary audit record (a corrupt
// count must not allocate gigabytes; the body bounds it anyway).
const maxAuditEvents = 1 << 24

var errAuditBody = errors.New("malformed binary audit record")

// IsAudit reports whether body is a binary audit body.
func IsAudit(body []byte) bool {
	return len(body) > 0 && (body[0] == AuditMagic || body[0] == AuditMagic2 || body[0] == AuditMagic3)
}

// AppendAudit appends the binary body of events to buf.
func AppendAudit(buf []byte, events []catalog.AuditEvent) []byte {
	magic := byte(AuditMagic)
	for i := range events {
		if extended(&events[i]) {
			magic = AuditMagic3
			break
		}
		if events[i].Completes {
			magic = AuditMagic2
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
		if magic == AuditMagic3 {
			buf = appendExtension(buf, e)
		}
	}
	return buf
}

// appendExtension appends the flags byte and the fields of AuditMagic3.
func appendExtension(buf []byte, e *catalog.AuditEvent) []byte {
	var flags byte
	if e.Completes {
		flags |= flagCompletes
	}
	if e.TraceID != "" || e.SpanID != "" || e.Guardrails != "" {
		flags |= flagTrace
	}
	if e.Usage != nil {
		flags |= flagUsage
	}
	if e.Payload != nil {
		flags |= flagPayload
	}
	buf = append(buf, flags)
	if flags&flagTrace != 0 {
		buf = appendString(appendString(appendString(buf, e.TraceID), e.SpanID), e.Guardrails)
	}
	if u := e.Usage; u != nil {
		for _, s := range [...]string{u.ProviderService, u.Provider, u.Model, u.RequestTags, u.Routing} {
			buf = appendString(buf, s)
		}
		for _, v := range [...]int64{u.InputTokens, u.OutputTokens, u.CachedInputTokens, u.CacheWriteTokens, u.ReasoningTokens, u.CostNanos} {
			buf = binary.AppendVarint(buf, v)
		}
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(u.TTFTMs))
		var st byte
		if u.Streaming {
			st = 1
		}
		buf = append(buf, st)
	}
	if p := e.Payload; p != nil {
		buf = appendString(appendString(buf, p.RequestBody), p.ResponseBody)
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
			len(e.Decision) + len(e.Reason) + len(e.TraceID) + len(e.SpanID) + len(e.Guardrails) + 4
		if u := e.Usage; u != nil {
			n += 64 + 6*binary.MaxVarintLen64 + len(u.ProviderService) + len(u.Provider) + len(u.Model) + len(u.RequestTags) + len(u.Routing)
		}
		if p := e.Payload; p != nil {
			n += 2*binary.MaxVarintLen64 + len(p.RequestBody) + len(p.ResponseBody)
		}
	}
	return n
}

// DecodeAudit decodes a binary audit body (starting with AuditMagic,
// AuditMagic2 or AuditMagic3).
func DecodeAudit(b []byte) ([]catalog.AuditEvent, error) {
	if !IsAudit(b) {
		return nil, errAuditBody
	}
	flags, ext := b[0] == AuditMagic2, b[0] == AuditMagic3
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
		if ext && d.err == nil {
			d.extension(e)
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

// extension reads the flags byte and the fields of AuditMagic3.
func (d *auditDecoder) extension(e *catalog.AuditEvent) {
	if len(d.b) < 1 || d.b[0]&^(flagCompletes|flagTrace|flagUsage|flagPayload) != 0 {
		d.err = errAuditBody
		return
	}
	flags := d.b[0]
	d.b = d.b[1:]
	e.Completes = flags&flagCompletes != 0
	if flags&flagTrace != 0 {
		e.TraceID, e.SpanID, e.Guardrails = d.str(), d.str(), d.str()
	}
	if flags&flagUsage != 0 {
		u := &catalog.LLMUsage{}
		for _, p := range [...]*string{&u.ProviderService, &u.Provider, &u.Model, &u.RequestTags, &u.Routing} {
			*p = d.str()
		}
		for _, p := range [...]*int64{&u.InputTokens, &u.OutputTokens, &u.CachedInputTokens, &u.CacheWriteTokens, &u.ReasoningTokens, &u.CostNanos} {
			*p = d.varint()
		}
		if d.err != nil || len(d.b) < 9 || d.b[8] > 1 {
			d.err = errAuditBody
			return
		}
		u.TTFTMs = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		u.Streaming = d.b[8] == 1
		d.b = d.b[9:]
		e.Usage = u
	}
	if flags&flagPayload != 0 {
		e.Payload = &catalog.AuditPayload{RequestBody: d.str(), ResponseBody: d.str()}
	}
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
