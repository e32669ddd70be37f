package catalog

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Tool pins (the pin_tools guardrail) are TypeToolPin securables under
// their connection, one per tool name the gateway has seen in the
// connection's tools/list, so that they are durable, replicated with the
// catalog and audited like every catalog change. Their Options:
//
//	seen         the canonical hash of the definition last seen
//	approved     the approved (pinned) hash; absent until approved
//	first_seen   when the tool was first seen (RFC 3339, UTC)
//	last_seen    when it was last seen, to the hour (refreshing it is not
//	             audited)
//	approved_at  when, and approved_by by whom ("first_seen": on first
//	             sight, by the policy's approve 'first_seen')
const (
	pinSeen       = "seen"
	pinApproved   = "approved"
	pinFirstSeen  = "first_seen"
	pinLastSeen   = "last_seen"
	pinApprovedAt = "approved_at"
	pinApprovedBy = "approved_by"

	// MaxToolPins bounds the tools recorded per connection.
	MaxToolPins = 4096
	// ToolSeenResolution is how stale a pin's last_seen may get before the
	// gateway refreshes it.
	ToolSeenResolution = time.Hour
	// ApprovedOnFirstSight is approved_by of a pin approved on first sight.
	ApprovedOnFirstSight = "first_seen"
)

// Tool statuses.
const (
	ToolApproved = "approved" // the definition seen is the one approved
	ToolChanged  = "changed"  // approved once, since seen with another definition
	ToolNew      = "new"      // never approved
)

// ToolPin is one tool of a connection as the catalog knows it.
type ToolPin struct {
	Connection ID
	Name       string
	// Seen is the hash of the definition last seen, Approved the pinned
	// one ("" until approved).
	Seen, Approved      string
	FirstSeen, LastSeen time.Time
	ApprovedAt          time.Time
	ApprovedBy          string
}

// Status is ToolApproved, ToolChanged or ToolNew.
func (p ToolPin) Status() string {
	switch {
	case p.Approved == "":
		return ToolNew
	case p.Seen != p.Approved:
		return ToolChanged
	}
	return ToolApproved
}

// PinOf reads tool pin s (a TypeToolPin securable).
func PinOf(s *Securable) ToolPin {
	o := s.Options
	t := func(k string) time.Time {
		v, _ := time.Parse(time.RFC3339, o[k])
		return v
	}
	return ToolPin{Connection: s.Parent, Name: s.Name, Seen: o[pinSeen], Approved: o[pinApproved],
		FirstSeen: t(pinFirstSeen), LastSeen: t(pinLastSeen), ApprovedAt: t(pinApprovedAt), ApprovedBy: o[pinApprovedBy]}
}

func (p ToolPin) options() map[string]string {
	o := map[string]string{pinSeen: p.Seen}
	put := func(k string, v time.Time) {
		if !v.IsZero() {
			o[k] = v.UTC().Format(time.RFC3339)
		}
	}
	put(pinFirstSeen, p.FirstSeen)
	put(pinLastSeen, p.LastSeen)
	if p.Approved != "" {
		o[pinApproved] = p.Approved
		put(pinApprovedAt, p.ApprovedAt)
		o[pinApprovedBy] = p.ApprovedBy
	}
	return o
}

// ToolPins returns the tools recorded for connection conn, by name.
func (m *Model) ToolPins(conn ID) []ToolPin {
	var out []ToolPin
	for _, c := range m.Children(conn) {
		if c.Type == TypeToolPin {
			out = append(out, PinOf(c))
		}
	}
	return out
}

// ToolPins returns the tools recorded for connection conn (unsorted).
func (s *Snapshot) ToolPins(conn ID) []ToolPin {
	ps := s.securables().pins[conn]
	out := make([]ToolPin, len(ps))
	for i, p := range ps {
		out[i] = PinOf(p)
	}
	return out
}

// ApproveTools approves the definitions last seen of the named tools of a
// connection (all tools not approved as seen when names is empty):
// ALTER CONNECTION c APPROVE TOOLS [name, ...]. Needs the right to manage
// the connection. A tool the gateway has not seen yet cannot be approved.
func (tx *Tx) ApproveTools(path []string, names []string) error {
	tx.audit(TypeConnection, displayPath(path))
	conn, err := tx.m.Lookup(TypeConnection, path)
	if err != nil {
		return err
	}
	if err := tx.checkManage(conn, "approve the tools of connection "+conn.FullName()); err != nil {
		return err
	}
	now := tx.svc.now().UTC().Truncate(time.Second)
	approve := func(s *Securable) {
		p := PinOf(s)
		if p.Status() == ToolApproved {
			return
		}
		p.Approved, p.ApprovedAt, p.ApprovedBy = p.Seen, now, tx.caller.Name
		cp := *s
		cp.Options = p.options()
		tx.do(opPutSecurable{&cp})
	}
	if len(names) == 0 {
		for _, c := range tx.m.Children(conn.ID) {
			if c.Type == TypeToolPin {
				approve(c)
			}
		}
		return nil
	}
	for _, n := range names {
		s, ok := tx.m.Child(conn.ID, TypeToolPin, n)
		if !ok {
			return Errorf(CodeNotFound, "tool %q has not been seen on connection %s", n, conn.FullName()).
				WithHint("the gateway records a connection's tools when an agent lists them (tools/list); SHOW TOOLS ON CONNECTION lists what it has seen")
		}
		approve(s)
	}
	return nil
}

// ToolSeen is a tool definition the gateway saw in a connection's
// tools/list: its name and canonical hash (gateway/guard/pin).
type ToolSeen struct {
	Name, Hash string
}

// toolChange is what recording one tool changes.
type toolChange int

const (
	toolUnchanged toolChange = iota
	toolSeenAgain            // last_seen only
	toolFirstSeen
	toolDefinitionChanged
)

// changeFor says what recording t on connection conn changes, given its
// pin (nil: none yet).
func changeFor(pin *ToolPin, t ToolSeen, now time.Time) toolChange {
	switch {
	case pin == nil:
		return toolFirstSeen
	case pin.Seen != t.Hash:
		return toolDefinitionChanged
	case now.Sub(pin.LastSeen) >= ToolSeenResolution:
		return toolSeenAgain
	}
	return toolUnchanged
}

// ToolsToRecord returns the tools of seen whose recording would change the
// catalog (new, changed, or last seen more than ToolSeenResolution ago),
// against pins (by name).
func ToolsToRecord(pins map[string]ToolPin, seen []ToolSeen, now time.Time) []ToolSeen {
	var out []ToolSeen
	for _, t := range seen {
		var pp *ToolPin
		if p, ok := pins[t.Name]; ok {
			pp = &p
		}
		if changeFor(pp, t, now) != toolUnchanged {
			out = append(out, t)
		}
	}
	return out
}

// recordTool records t on conn; approve pins a tool seen for the first
// time (approve 'first_seen').
func (tx *Tx) recordTool(conn ID, t ToolSeen, approve bool) error {
	c, ok := tx.m.Securable(conn)
	if !ok || c.Type != TypeConnection {
		return Errorf(CodeNotFound, "connection %d does not exist", conn)
	}
	tx.audit(TypeConnection, c.FullName())
	if err := validObjectName(TypeToolPin, t.Name); err != nil {
		return err
	}
	if t.Hash == "" || len(t.Hash) > 128 {
		return Errorf(CodeInvalidArgument, "tool %q: invalid definition hash", t.Name)
	}
	now := tx.svc.now().UTC().Truncate(time.Second)
	s, exists := tx.m.Child(conn, TypeToolPin, t.Name)
	var p ToolPin
	var pp *ToolPin
	if exists {
		p = PinOf(s)
		pp = &p
	}
	switch changeFor(pp, t, now) {
	case toolUnchanged:
		tx.noAudit = true
		return nil
	case toolSeenAgain:
		tx.noAudit = true
		p.LastSeen = now
	case toolFirstSeen:
		n := 0
		for _, ch := range tx.m.Children(conn) {
			if ch.Type == TypeToolPin {
				n++
			}
		}
		if n >= MaxToolPins {
			return Errorf(CodeLimitExceeded, "connection %s has %d tools recorded, the most it may have", c.FullName(), MaxToolPins)
		}
		p = ToolPin{Connection: conn, Name: t.Name, Seen: t.Hash, FirstSeen: now, LastSeen: now}
		if approve {
			p.Approved, p.ApprovedAt, p.ApprovedBy = t.Hash, now, ApprovedOnFirstSight
		}
		tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeToolPin, Parent: conn, Name: t.Name, Owner: c.Owner,
			Options: p.options(), Created: now}})
		return nil
	case toolDefinitionChanged:
		p.Seen, p.LastSeen = t.Hash, now
	}
	cp := *s
	cp.Options = p.options()
	tx.do(opPutSecurable{&cp})
	return nil
}

// Audit actions of the gateway's tool records.
const (
	ActionToolSeen    = "TOOL SEEN"    // a new tool (approved on first sight or not)
	ActionToolChanged = "TOOL CHANGED" // a tool's definition changed
)

// RecordTools records what the gateway saw in a tools/list of connection
// conn: tools seen for the first time (approved at once when approveNew:
// approve 'first_seen'), tools whose definition changed (never approved
// automatically) and, untracked by the audit, when known tools were last
// seen. Each new or changed tool is its own audited statement (action
// TOOL SEEN or TOOL CHANGED, by the built-in admin on the gateway's
// behalf; the statement text says who listed the tools); all of them
// commit together. Nothing is written when nothing changed. by names the
// caller whose tools/list it was (audit only).
func (s *Service) RecordTools(ctx context.Context, conn ID, seen []ToolSeen, approveNew bool, by string) (Revision, error) {
	var pins map[string]ToolPin
	var connName string
	s.Read(func(m *Model) {
		if c, ok := m.Securable(conn); ok && c.Type == TypeConnection {
			connName = c.FullName()
			pins = map[string]ToolPin{}
			for _, p := range m.ToolPins(conn) {
				pins[p.Name] = p
			}
		}
	})
	if pins == nil {
		return 0, Errorf(CodeNotFound, "connection %d does not exist", conn)
	}
	valid := make([]ToolSeen, 0, len(seen))
	for _, t := range seen {
		if validObjectName(TypeToolPin, t.Name) == nil && t.Hash != "" && len(t.Hash) <= 128 {
			valid = append(valid, t) // others stay unrecorded, and hidden
		}
	}
	todo := ToolsToRecord(pins, valid, s.now().UTC())
	if len(todo) == 0 {
		return s.Revision(), nil
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].Name < todo[j].Name })
	stmts := make([]Statement, 0, len(todo))
	for _, t := range todo {
		action, what := ActionToolSeen, "seen for the first time"
		if p, ok := pins[t.Name]; ok {
			if p.Seen == t.Hash {
				action, what = ActionToolSeen, "seen again"
			} else {
				action, what = ActionToolChanged, "changed from sha256:"+short(p.Seen)
			}
		} else if approveNew {
			what += ", approved on first sight"
		}
		text := fmt.Sprintf("-- tools/list of connection %s (listed by %s): tool %s %s, definition sha256:%s",
			connName, QuoteIdent(by), QuoteIdent(t.Name), what, short(t.Hash))
		t := t
		stmts = append(stmts, Statement{
			Req: WriteRequest{Caller: Caller{Principal: AdminUser, UserAgent: "mandate-gateway", Statement: text}, Action: action},
			Fn:  func(tx *Tx) error { return tx.recordTool(conn, t, approveNew) },
		})
	}
	return s.submit(ctx, stmts, false)
}

func short(hash string) string {
	if len(hash) > 16 {
		return hash[:16]
	}
	return hash
}
