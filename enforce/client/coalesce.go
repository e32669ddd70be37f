package client

import (
	"context"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
)

// pending is an Authorize call waiting for a free request slot.
type pending struct {
	ctx context.Context
	req enforce.Request
	res chan answer // buffered: the sender never blocks
}

type answer struct {
	d   enforce.Decision
	err error
}

// ask answers r from the API. With a free slot it sends r at once;
// otherwise r waits in the queue, and the next slot to free up sends
// everything queued as one batch.
func (c *Client) ask(ctx context.Context, r enforce.Request) (enforce.Decision, error) {
	c.qmu.Lock()
	if c.inflight < c.cfg.MaxInFlight {
		c.inflight++
		c.qmu.Unlock()
		d, err := c.askOne(ctx, r)
		c.release()
		return d, err
	}
	p := &pending{ctx: ctx, req: r, res: make(chan answer, 1)}
	c.queue = append(c.queue, p)
	c.qmu.Unlock()
	select {
	case a := <-p.res:
		return a.d, a.err
	case <-ctx.Done():
		return deny(fmt.Sprintf("authorization request abandoned (%v): denying", ctx.Err())), ctx.Err()
	}
}

// release gives up a slot, or hands it to a goroutine that sends the
// queue, so that the caller returns its own answer without waiting.
func (c *Client) release() {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		c.inflight--
		return
	}
	go c.drain()
}

// drain sends the queue in batches while holding one slot.
func (c *Client) drain() {
	for {
		c.qmu.Lock()
		if len(c.queue) == 0 {
			c.inflight--
			c.qmu.Unlock()
			return
		}
		n := min(len(c.queue), MaxBatch)
		batch := append([]*pending(nil), c.queue[:n]...)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.qmu.Unlock()
		c.sendQueued(batch)
	}
}

func (c *Client) sendQueued(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if p.ctx.Err() == nil { // its caller has gone: not worth asking
			live = append(live, p)
		}
	}
	if len(live) == 0 {
		return
	}
	c.batches.Add(1)
	checks := make([]api.Check, len(live))
	for i, p := range live {
		checks[i] = api.Check{Request: p.req}
	}
	req := api.AuthorizeRequest{Checks: &checks}
	req.AtLeastRevision = c.Revision()
	start := time.Now()
	var res api.BatchResponse
	err := c.post(c.ctx, req, &res)
	if err == nil && len(res.Results) != len(live) {
		err = fmt.Errorf("%w: %d results for %d checks", ErrUnavailable, len(res.Results), len(live))
	}
	if err != nil {
		d, err := c.failed(err)
		for _, p := range live {
			p.res <- answer{d, err}
		}
		return
	}
	var newest catalog.Revision
	for _, d := range res.Results {
		newest = max(newest, d.Revision)
	}
	c.observe(newest, start)
	for i, p := range live {
		if c.cacheable(&p.req) {
			c.store(&p.req, res.Results[i])
		}
		p.res <- answer{d: res.Results[i]}
	}
}
