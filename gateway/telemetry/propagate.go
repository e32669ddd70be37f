package telemetry

import (
	"context"
	"encoding/hex"

	"go.opentelemetry.io/otel/trace"

	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Outbound is the W3C trace context an adapter sends upstream with the
// call at ctx (the traceparent and tracestate headers, and for MCP the
// message's params._meta): the current span's (the attempt's, or the
// stage's) when the call is traced; else the call's own trace context,
// passed on as it came, or one made of the call's TraceID and SpanID
// (sampled) when the agent sent none.
func Outbound(ctx context.Context, c *pipeline.Call) (traceparent, tracestate string) {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && !sc.IsRemote() {
		return FormatTraceparent(sc), sc.TraceState().String()
	}
	if c.TraceParent != "" {
		return c.TraceParent, c.TraceState
	}
	return "00-" + c.TraceID + "-" + c.SpanID + "-01", ""
}

// FormatTraceparent renders sc as a version 00 traceparent.
func FormatTraceparent(sc trace.SpanContext) string {
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags())})
	return string(b[:])
}

// spanContextOf parses a traceparent (and tracestate) into a remote span
// context.
func spanContextOf(tp, ts string) (trace.SpanContext, bool) {
	if pipeline.TraceIDOf(tp) == "" {
		return trace.SpanContext{}, false
	}
	tid, err1 := trace.TraceIDFromHex(tp[3:35])
	sid, err2 := trace.SpanIDFromHex(tp[36:52])
	var flags [1]byte
	_, err3 := hex.Decode(flags[:], []byte(tp[53:55]))
	if err1 != nil || err2 != nil || err3 != nil {
		return trace.SpanContext{}, false
	}
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true}
	if ts != "" {
		if state, err := trace.ParseTraceState(ts); err == nil {
			cfg.TraceState = state
		}
	}
	return trace.NewSpanContext(cfg), true
}
