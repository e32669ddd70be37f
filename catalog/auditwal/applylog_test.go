package auditwal

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/logtest"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// downStore is a store whose ApplyLog fails while down is set.
type downStore struct {
	keepOpen
	down  atomic.Bool
	tries atomic.Int64
}

func (s *downStore) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	s.tries.Add(1)
	if s.down.Load() {
		return errors.New("catalog database unreachable")
	}
	return s.keepOpen.ApplyLog(ctx, seq, events, mark)
}

// lockedBuffer is a log destination the applier and the test share.
type lockedBuffer = logtest.Buffer

// A store that stays down is retried at every tick but logged at most once
// per applyErrorLogEvery; its recovery is logged once.
func TestApplyFailuresLoggedNotFlooded(t *testing.T) {
	ctx := t.Context()
	inner := &downStore{keepOpen: keepOpen{memstore.New()}}
	inner.down.Store(true)
	var out lockedBuffer
	l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Millisecond, MaxPending: 1 << 30, ApplyDelay: -1,
		Logger: zerolog.New(&out)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.AppendAudit(ctx, event(1)); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second) // a failure bound
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("50 failed applies", func() bool { return inner.tries.Load() >= 50 })
	if n := out.Count("applying to the store failed"); n != 1 {
		t.Fatalf("%d log lines for 50 failed applies within %v, want 1:\n%s", n, applyErrorLogEvery, out.String())
	}
	inner.down.Store(false)
	waitFor("the recovery line", func() bool { return out.Count("applying to the store works again") == 1 })
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 1 {
		t.Fatalf("%d events applied after the store came back, want 1", len(es))
	}
}
