package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// eventWriteTimeout bounds each write of the watch stream: a watcher that
// stops reading is dropped instead of holding the handler forever.
const eventWriteTimeout = 10 * time.Second

// watchParams reads since (the query, or Last-Event-ID when later) and the
// heartbeat a watcher asks for.
func (h *handler) watchParams(r *http.Request) (catalog.Revision, time.Duration, error) {
	var since catalog.Revision
	parse := func(what, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "%s must be a revision (a non-negative integer), not %q", what, v)
		}
		since = max(since, catalog.Revision(n))
		return nil
	}
	q := r.URL.Query()
	if v := q.Get("since"); v != "" {
		if err := parse("since", v); err != nil {
			return 0, 0, err
		}
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if err := parse("Last-Event-ID", v); err != nil {
			return 0, 0, err
		}
	}
	hb := h.o.Heartbeat
	if v := q.Get("heartbeat"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return 0, 0, errorf(http.StatusBadRequest, "heartbeat must be a positive duration such as 2s, not %q", v)
		}
		hb = min(max(d, min(MinHeartbeat, h.o.Heartbeat)), h.o.Heartbeat)
	}
	return since, hb, nil
}

func (h *handler) watch(w http.ResponseWriter, r *http.Request) error {
	since, hb, err := h.watchParams(r)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	// Subscribe before reading the current revision so that no commit
	// falls between the two.
	ch, cancel := h.d.Subscribe()
	defer cancel()

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	last := since
	buf := make([]byte, 0, 96)
	write := func(b []byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// sendNewest sends the current revision if it is newer than the last
	// sent, else the comment; so a comment never hides a newer revision.
	sendNewest := func(rev catalog.Revision, comment string) error {
		rev = max(rev, h.d.Revision())
		if rev <= last {
			return write([]byte(comment))
		}
		last = rev
		buf = appendEvent(buf[:0], rev)
		return write(buf)
	}
	// On connect: the current revision if it differs from since (a
	// catalog restored from a backup may be behind its watchers: they
	// learn it), else a comment.
	if cur := h.d.Revision(); cur < since {
		last = cur
		err = write(appendEvent(buf[:0], cur))
	} else {
		err = sendNewest(0, ": ok\n\n")
	}
	if err != nil {
		return nil // the watcher went away
	}
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case rev, ok := <-ch:
			if !ok { // the decider is closing
				return nil
			}
			if rev > last {
				err = sendNewest(rev, "")
			}
		case <-t.C:
			err = sendNewest(0, ": heartbeat\n\n")
		}
		if err != nil {
			h.log.Debug().Err(err).Str("remote", r.RemoteAddr).Msg("watch stream ended")
			return nil
		}
	}
}

// appendEvent appends the event announcing rev.
func appendEvent(b []byte, rev catalog.Revision) []byte {
	b = append(b, "id: "...)
	b = strconv.AppendInt(b, int64(rev), 10)
	b = append(b, "\nevent: revision\ndata: {\"revision\": "...)
	b = strconv.AppendInt(b, int64(rev), 10)
	return append(b, "}\n\n"...)
}
