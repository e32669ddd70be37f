package api

import (
	"context"
	"reflect"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
)

type discardRecorder struct{}

func (discardRecorder) RecordBatch(context.Context, []catalog.AuditEvent) error { return nil }

// TestDecisionQueueBuffer: the decision queue's buffer, allocated once and
// live for the process (so every GC cycle scans it, used or not), stays
// small; a buffer of events by value was 25 MB.
func TestDecisionQueueBuffer(t *testing.T) {
	const maxBytes = 1 << 20
	a := newDecisionAudit(t.Context(), discardRecorder{}, zerolog.Nop())
	if n := uintptr(cap(a.q)) * reflect.TypeOf(a.q).Elem().Size(); n > maxBytes {
		t.Errorf("the decision queue's buffer is %d bytes, want at most %d", n, maxBytes)
	}
}
