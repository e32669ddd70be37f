package catalog

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// AuditRecorder records one audit event: *AuditLog, gateway.AuditSink
// implementations, FailureAudit itself.
type AuditRecorder interface {
	Record(ctx context.Context, ev AuditEvent) error
}

// AuditRecorderFunc adapts a function to AuditRecorder.
type AuditRecorderFunc func(ctx context.Context, ev AuditEvent) error

// Record calls f.
func (f AuditRecorderFunc) Record(ctx context.Context, ev AuditEvent) error { return f(ctx, ev) }

var (
	_ AuditRecorder = (*AuditLog)(nil)
	_ AuditRecorder = (*FailureAudit)(nil)
)

// Defaults of FailureAuditOptions.
const (
	DefaultFailureInterval     = time.Minute
	DefaultFailureMaxGroups    = 1024
	DefaultFailureMaxPerSource = 16
	// failureMaxUsers bounds the distinct user names a summary lists.
	failureMaxUsers = 8
)

// FailureAuditOptions configure a FailureAudit.
type FailureAuditOptions struct {
	// Interval is the window repeated failures are counted in (default one
	// minute): each window writes at most one summary per group.
	Interval time.Duration
	// MaxGroups bounds the groups of one window (default 1024); a failure
	// that would open one more is counted in its source's overflow group
	// (or, past MaxGroups more of those, in one overflow group for all).
	MaxGroups int
	// MaxPerSource bounds the groups one source address may open in a
	// window (default 16); its further failures go to its overflow group.
	MaxPerSource int
	// IsFailure picks the events to aggregate (default IsAuthFailure).
	IsFailure func(*AuditEvent) bool
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger zerolog.Logger
}

// IsAuthFailure reports whether ev records a request refused before its
// caller was authenticated: a denial with HTTP status 401, with SQLSTATE
// 28P01 or 28000 (a failed login), or with no authenticated identity at
// all (user_identity and run_as empty). Anyone can cause these without a
// credential, so FailureAudit aggregates them.
func IsAuthFailure(ev *AuditEvent) bool {
	if ev.Decision != "deny" {
		return false
	}
	return ev.StatusCode == 401 || ev.SQLState == "28P01" || ev.SQLState == "28000" ||
		(ev.UserIdentity == "" && ev.RunAs == "")
}

// FailureAudit is an AuditRecorder in front of another that aggregates
// failures anyone can cause without a credential (IsAuthFailure:
// unauthenticated MCP requests, failed SQL logins, requests without the
// node token), so that nobody without a credential can fill the audit
// log. Other events pass through unchanged.
//
// Failures are grouped per window (Interval) by (source address, service,
// action, reason); IPv6 sources by their /64, which one attacker usually
// holds whole. The first failure of a group in a window is recorded
// individually and durably, like any event: a single failed login is in
// the log before its answer. Its repeats in the same window are only
// counted, and Record returns at once: they are NOT durable before the
// answer. At the end of the window one summary event per group carries
// their count: the group's fields that all its repeats share (others are
// left empty), a new event_id, event_time the window's end, and
// request_params {"aggregated_events": N, "first_time", "last_time",
// "window_start", "window_end", "user_identities": [up to 8 distinct
// names]}. Groups per window are bounded (MaxGroups, MaxPerSource), so a
// window writes at most 2*MaxGroups+1 rows, whatever the traffic.
//
// Close writes the open window's summaries. It is safe for concurrent use.
type FailureAudit struct {
	next AuditRecorder
	o    FailureAuditOptions
	log  zerolog.Logger

	mu       sync.Mutex
	start    time.Time // of the open window
	groups   map[failureKey]*failureGroup
	perSrc   map[string]int
	overflow int // overflow groups opened in this window

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

type failureKey struct {
	source, service, action, reason string
	overflow                        bool
}

type failureGroup struct {
	tmpl        AuditEvent // fields all aggregated events share
	set         bool       // tmpl holds the first aggregated event
	count       int
	first, last time.Time
	users       []string
}

// NewFailureAudit starts a FailureAudit in front of next. Close stops it.
func NewFailureAudit(next AuditRecorder, o FailureAuditOptions) *FailureAudit {
	if o.Interval <= 0 {
		o.Interval = DefaultFailureInterval
	}
	if o.MaxGroups <= 0 {
		o.MaxGroups = DefaultFailureMaxGroups
	}
	if o.MaxPerSource <= 0 {
		o.MaxPerSource = DefaultFailureMaxPerSource
	}
	if o.IsFailure == nil {
		o.IsFailure = IsAuthFailure
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &FailureAudit{next: next, o: o, log: o.Logger.With().Str("component", "audit-failures").Logger(),
		start: o.Now(), groups: map[failureKey]*failureGroup{}, perSrc: map[string]int{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go a.run()
	return a
}

// Record passes ev to the next recorder, unless it is a repeated failure
// (see FailureAudit), which it counts and returns nil.
func (a *FailureAudit) Record(ctx context.Context, ev AuditEvent) error {
	if !a.o.IsFailure(&ev) {
		return a.next.Record(ctx, ev)
	}
	if ev.Time.IsZero() {
		ev.Time = a.o.Now()
	}
	// Capped now, so that a kept group holds bounded text.
	if err := ev.Validate(); err != nil {
		return err
	}
	src := sourceKey(ev.SourceIP)
	k := failureKey{source: src, service: ev.Service, action: ev.Action, reason: ev.Reason}
	a.mu.Lock()
	if g, ok := a.groups[k]; ok {
		g.add(&ev)
		a.mu.Unlock()
		return nil
	}
	if len(a.groups)-a.overflow < a.o.MaxGroups && a.perSrc[src] < a.o.MaxPerSource {
		// A new group: this event is recorded individually.
		a.groups[k] = &failureGroup{}
		a.perSrc[src]++
		a.mu.Unlock()
		return a.next.Record(ctx, ev)
	}
	// Too many groups: count it in its source's overflow group, or in the
	// one for all sources once those are too many too.
	k = failureKey{source: src, service: ev.Service, overflow: true}
	if _, ok := a.groups[k]; !ok && a.overflow >= a.o.MaxGroups {
		k = failureKey{source: "*", overflow: true}
	}
	g, ok := a.groups[k]
	if !ok {
		g = &failureGroup{}
		a.groups[k] = g
		a.overflow++
	}
	g.add(&ev)
	a.mu.Unlock()
	return nil
}

func (g *failureGroup) add(ev *AuditEvent) {
	g.count++
	if !g.set {
		g.tmpl, g.set, g.first = *ev, true, ev.Time
		g.tmpl.RequestParams = "" // replaced by the summary's; not kept
	} else {
		t := &g.tmpl
		for _, f := range [...]struct {
			p *string
			v string
		}{
			{&t.Service, ev.Service}, {&t.Action, ev.Action}, {&t.UserIdentity, ev.UserIdentity},
			{&t.RunBy, ev.RunBy}, {&t.RunAs, ev.RunAs}, {&t.SourceIP, ev.SourceIP}, {&t.UserAgent, ev.UserAgent},
			{&t.SessionID, ev.SessionID}, {&t.RequestID, ev.RequestID}, {&t.SecurableType, ev.SecurableType},
			{&t.SecurableName, ev.SecurableName}, {&t.ErrorMessage, ev.ErrorMessage}, {&t.SQLState, ev.SQLState},
			{&t.Reason, ev.Reason},
		} {
			if *f.p != f.v {
				*f.p = ""
			}
		}
		if t.StatusCode != ev.StatusCode {
			t.StatusCode = 0
		}
		if ev.Time.Before(g.first) {
			g.first = ev.Time
		}
	}
	if ev.Time.After(g.last) {
		g.last = ev.Time
	}
	if u := ev.UserIdentity; u != "" && len(g.users) < failureMaxUsers {
		for _, have := range g.users {
			if have == u {
				return
			}
		}
		g.users = append(g.users, u)
	}
}

// sourceKey is the address failures are grouped by: an IPv4 address, or
// the /64 of an IPv6 address; anything else as given.
func sourceKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// summaryParams is request_params of a summary event.
type summaryParams struct {
	Count          int       `json:"aggregated_events"`
	FirstTime      time.Time `json:"first_time"`
	LastTime       time.Time `json:"last_time"`
	WindowStart    time.Time `json:"window_start"`
	WindowEnd      time.Time `json:"window_end"`
	UserIdentities []string  `json:"user_identities,omitempty"`
}

// Flush ends the open window now: it writes the summaries of its repeated
// failures to the next recorder and starts a new window.
func (a *FailureAudit) Flush(ctx context.Context) error {
	a.mu.Lock()
	groups, start, end := a.groups, a.start, a.o.Now()
	a.groups, a.perSrc, a.overflow, a.start = map[failureKey]*failureGroup{}, map[string]int{}, 0, end
	a.mu.Unlock()
	var first error
	for k, g := range groups {
		if g.count == 0 {
			continue
		}
		ev := g.tmpl
		ev.EventID, ev.Time, ev.Decision = NewEventID(), end, "deny"
		if ev.SourceIP == "" && k.source != "*" {
			// Several addresses of one IPv6 /64: name the prefix.
			ev.SourceIP = k.source
		}
		p, _ := json.Marshal(summaryParams{Count: g.count, FirstTime: g.first.UTC(), LastTime: g.last.UTC(),
			WindowStart: start.UTC(), WindowEnd: end.UTC(), UserIdentities: g.users})
		ev.RequestParams = string(p)
		if err := a.next.Record(ctx, ev); err != nil {
			a.log.Error().Err(err).Int("events", g.count).Str("service", ev.Service).Str("source", k.source).
				Msg("could not record the summary of repeated failures")
			if first == nil {
				first = err
			}
		}
	}
	return first
}

func (a *FailureAudit) run() {
	defer close(a.stopped)
	t := time.NewTicker(a.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), DefaultAuditWriteTimeout)
			_ = a.Flush(ctx)
			cancel()
		}
	}
}

// Close stops the windows and writes the open one's summaries.
func (a *FailureAudit) Close(ctx context.Context) error {
	a.once.Do(func() { close(a.stop) })
	select {
	case <-a.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	return a.Flush(ctx)
}
