package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/enforce/api"
)

// watchLoop keeps a watch stream open until Close, reconnecting with
// exponential backoff and jitter.
func (c *Client) watchLoop() {
	defer close(c.done)
	backoff := c.cfg.BackoffMin
	failures := 0
	for {
		live, err := c.watchOnce(c.ctx)
		c.watching.Store(false)
		if c.ctx.Err() != nil {
			return
		}
		if live {
			backoff, failures = c.cfg.BackoffMin, 0
		}
		failures++
		ev := c.log.Debug()
		if failures == 1 {
			ev = c.log.Warn()
		}
		ev.Err(err).Dur("retry_in", backoff).Int("failures", failures).Msg("authorization watch disconnected")
		// Equal jitter: between half and all of the backoff.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
}

// watchOnce reads one watch stream until it fails; live reports whether
// the stream delivered anything.
func (c *Client) watchOnce(ctx context.Context) (live bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A stream silent for longer than this is dead (heartbeats are due
	// every Heartbeat): drop it and reconnect.
	idle := 2*c.cfg.Heartbeat + c.cfg.RequestTimeout
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()

	u := c.base + api.WatchPath + "?since=" + strconv.FormatInt(int64(c.Revision()), 10) +
		"&heartbeat=" + c.cfg.Heartbeat.String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.wc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, decodeAnswer(resp, nil)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		return false, fmt.Errorf("watch answered with Content-Type %q, not text/event-stream", resp.Header.Get("Content-Type"))
	}
	c.connects.Add(1)
	br := bufio.NewReaderSize(resp.Body, 1024)
	var event, data string
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if ctx.Err() != nil && c.ctx.Err() == nil {
				err = fmt.Errorf("watch stream silent for %s: %w", idle, err)
			}
			return live, err
		}
		watchdog.Reset(idle)
		if !live {
			live = true
			c.watching.Store(true)
			if c.connects.Load() > 1 {
				c.log.Info().Int64("since", int64(c.Revision())).Msg("authorization watch reconnected")
			}
		}
		s := strings.TrimRight(string(line), "\r\n")
		switch {
		case s == "": // dispatch
			if event == "revision" {
				var ev api.RevisionEvent
				if err := strictjson.Unmarshal([]byte(data), &ev, strictjson.Options{}); err != nil {
					return live, fmt.Errorf("watch event with bad data %q: %w", data, err)
				}
				if ev.Revision < c.Revision() {
					c.rewind(ev.Revision, time.Now())
				} else {
					c.observe(ev.Revision, time.Now())
				}
			}
			event, data = "", ""
		case s[0] == ':': // heartbeat: nothing newer is unsent
			c.markFresh(time.Now())
		default:
			field, value, _ := strings.Cut(s, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				event = value
			case "data":
				if data != "" {
					data += "\n"
				}
				data += value
			}
		}
	}
}
