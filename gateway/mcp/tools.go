package mcp

import (
	"context"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// batchAuthorizer is implemented by enforce/client.Client: one API round
// trip for many checks. Authorizers without it are asked in parallel.
type batchAuthorizer interface {
	AuthorizeBatch(ctx context.Context, reqs []enforce.Request) ([]enforce.Decision, error)
}

// listParallelism bounds the concurrent per-tool checks of one tools/list
// when the Authorizer has no batch call.
const listParallelism = 16

// toolKey identifies a per-tool listing decision. Rev is the connection's
// catalog revision: any catalog change (grant, revoke, policy) makes the
// old entries unreachable.
type toolKey struct {
	subject, actor, conn, tool string
	rev                        catalog.Revision
}

// toolCache remembers which tools a caller may see in tools/list, for TTL
// (time-dependent policies) and at most max entries (then it starts over).
// It is a listing aid only: every tools/call is authorized live.
type toolCache struct {
	mu  sync.Mutex
	m   map[toolKey]toolEntry
	max int
	ttl time.Duration
}

type toolEntry struct {
	allowed bool
	expires int64 // unix nanoseconds
}

func newToolCache(max int, ttl time.Duration) *toolCache {
	return &toolCache{m: make(map[toolKey]toolEntry), max: max, ttl: ttl}
}

func (tc *toolCache) get(k toolKey, now time.Time) (allowed, ok bool) {
	tc.mu.Lock()
	e, ok := tc.m[k]
	tc.mu.Unlock()
	if !ok || now.UnixNano() > e.expires {
		return false, false
	}
	return e.allowed, true
}

func (tc *toolCache) put(k toolKey, allowed bool, now time.Time) {
	tc.mu.Lock()
	if len(tc.m) >= tc.max {
		clear(tc.m)
	}
	tc.m[k] = toolEntry{allowed: allowed, expires: now.Add(tc.ttl).UnixNano()}
	tc.mu.Unlock()
}

// toolsVisible reports, for each tool name, whether c's caller may see it
// in tools/list: it passes the connection's include_tools and the caller
// may call it (the tools/call authorization without arguments). Any error
// hides the tool.
func (h *Handler) toolsVisible(ctx context.Context, x *exchange, names []string) []bool {
	out := make([]bool, len(names))
	now := h.now()
	include := x.conn.Options[catalog.OptIncludeTools]
	var ask []int
	for i, n := range names {
		if !catalog.ToolAllowed(include, n) {
			continue
		}
		if ok, hit := h.tools.get(x.toolKey(n), now); hit {
			out[i] = ok
			continue
		}
		ask = append(ask, i)
	}
	if len(ask) == 0 {
		return out
	}
	reqs := make([]enforce.Request, len(ask))
	for j, i := range ask {
		reqs[j] = x.authzRequest("tools/call", names[i], nil)
	}
	decisions := make([]enforce.Decision, len(ask))
	failed := make([]bool, len(ask)) // no decision: hide, but do not remember
	authz := h.p.Authorizer()
	if b, ok := authz.(batchAuthorizer); ok {
		ds, err := b.AuthorizeBatch(ctx, reqs)
		if err != nil || len(ds) != len(reqs) {
			h.log.Warn().Err(err).Str("connection", x.conn.Name).Msg("tools/list: per-tool authorization failed; hiding the tools")
			for j := range failed {
				failed[j] = true
			}
		} else {
			decisions = ds
		}
	} else {
		var wg sync.WaitGroup
		sem := make(chan struct{}, listParallelism)
		for j := range reqs {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				d, err := authz.Authorize(ctx, reqs[j])
				decisions[j], failed[j] = d, err != nil
			}()
		}
		wg.Wait()
	}
	for j, i := range ask {
		out[i] = decisions[j].Allowed && !failed[j]
		if !failed[j] && ctx.Err() == nil {
			h.tools.put(x.toolKey(names[i]), out[i], now)
		}
	}
	return out
}

// filterToolsList returns the JSON-RPC message data with result.tools
// reduced to the tools the caller may see. Messages that carry no tools
// array come back unchanged. The rest of the message is kept byte for
// byte; only the array is rebuilt from the original tool objects.
func (h *Handler) filterToolsList(ctx context.Context, x *exchange, data []byte) ([]byte, error) {
	result, rs, _, ok := member(data, "result")
	if !ok || len(result) == 0 || result[0] != '{' {
		return data, nil
	}
	tools, ts, te, ok := member(result, "tools")
	if !ok || len(tools) == 0 || tools[0] != '[' {
		return data, nil
	}
	// A tool object's name decides its visibility, so the upstream's
	// message must read the same to every JSON decoder: the callers
	// checked it whole (validJSON: keys equal under case folding refused).
	type span struct{ s, e int }
	var names []string
	var spans []span
	err := eachElement(tools, func(elem []byte, s, e int) bool {
		name := ""
		if len(elem) > 0 && elem[0] == '{' {
			if v, _, _, ok := member(elem, "name"); ok {
				name, _ = stringValue(v)
			}
		}
		names = append(names, name)
		spans = append(spans, span{s, e})
		return true
	})
	if err != nil {
		return nil, err
	}
	visible := h.toolsVisible(ctx, x, names)
	all := true
	for i, v := range visible {
		if !v || names[i] == "" {
			all = false
			break
		}
	}
	if all {
		return data, nil
	}
	start, end := rs+ts, rs+te // the tools array's offsets in data
	out := make([]byte, 0, len(data))
	out = append(out, data[:start]...)
	out = append(out, '[')
	first := true
	for i, sp := range spans {
		if !visible[i] || names[i] == "" {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, tools[sp.s:sp.e]...)
	}
	out = append(out, ']')
	out = append(out, data[end:]...)
	return out, nil
}

// toolKey is the cache key of tool's visibility to x's caller.
func (x *exchange) toolKey(tool string) toolKey {
	id := x.call.Identity
	return toolKey{subject: id.Subject, actor: id.Actor, conn: x.conn.Name, tool: tool, rev: x.conn.Revision}
}

// authzRequest is the catalog question about x's connection with the
// given method, tool and arguments.
func (x *exchange) authzRequest(method, tool string, args []byte) enforce.Request {
	id := x.call.Identity
	pc := x.policyContext(method, tool, args)
	return enforce.Request{
		Subject:     id.Subject,
		Actor:       id.Actor,
		Privilege:   catalog.PrivUseConnection,
		Securable:   catalogConnection(x.conn.Name),
		LazyContext: &pc,
	}
}

// catalogConnection names a connection for the authorizer.
func catalogConnection(name string) enforce.SecurableRef {
	return enforce.SecurableRef{Type: catalog.TypeConnection, Name: name}
}
