package catalog

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rate limits and budgets: their definitions, stored as attachments
// (TypeRateLimit under the model service or connection they limit,
// TypeBudget under the metastore or under the model service it is
// restricted to) and exported as plain values (Model.RateLimits,
// Model.Budgets) for the runtime engine, which the integrator compiles
// per revision. The catalog only stores and shows them; counting and
// refusing is the gateway's.
//
// Who may define them: the rate limits of a model service or connection,
// whoever may manage it (its owner, MANAGE, metastore admins); budgets,
// metastore admins only (they span principals, services and tags, and
// are about money).

// LimitLevel is the scope a rate limit or budget applies at, in SQL
// spelling.
type LimitLevel string

const (
	LevelService          LimitLevel = "SERVICE" // the whole service (rate limits only)
	LevelEachUser         LimitLevel = "EACH USER"
	LevelUser             LimitLevel = "USER"
	LevelServicePrincipal LimitLevel = "SERVICE PRINCIPAL"
	LevelGroup            LimitLevel = "GROUP"
)

// principalLevel is the principal kind a level names ("" for none).
func (l LimitLevel) principalKind() PrincipalKind {
	switch l {
	case LevelUser:
		return KindUser
	case LevelServicePrincipal:
		return KindServicePrincipal
	case LevelGroup:
		return KindGroup
	}
	return ""
}

// Bounds of definitions.
const (
	MaxRateLimitsPerSecurable = 100
	MaxBudgets                = 1000
	MaxRequestsPerMinute      = 1_000_000_000
	MaxTokensPerMinute        = 1_000_000_000_000
	MaxBudgetTags             = 8
)

// Options of rate-limit and budget securables.
const (
	optLimitLevel     = "level"
	optLimitPrincipal = "principal" // ID
	optLimitRequests  = "requests"
	optLimitTokens    = "tokens"
	optBudgetUSD      = "limit_usd"
	optBudgetTags     = "tags" // JSON [[k, v], ...]
)

// RateLimitDef is one rate-limit definition as the runtime engine takes it.
type RateLimitDef struct {
	Securable     ID            `json:"securable"`
	SecurableType SecurableType `json:"securable_type"` // TypeModelService or TypeConnection
	SecurableName string        `json:"securable_name"` // full name
	Level         LimitLevel    `json:"level"`
	// Principal is the user, service principal or group (LevelUser,
	// LevelServicePrincipal, LevelGroup); 0 otherwise.
	Principal     ID     `json:"principal,omitempty"`
	PrincipalName string `json:"principal_name,omitempty"`
	// Requests and Tokens per minute; 0: not limited.
	Requests int64 `json:"requests,omitempty"`
	Tokens   int64 `json:"tokens,omitempty"`
}

// TagCond is one WHERE TAG condition of a budget.
type TagCond struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// BudgetDef is one budget definition as the runtime engine takes it.
type BudgetDef struct {
	Name string `json:"name"`
	// LimitUSD is the limit per calendar month (UTC), a decimal number
	// of US dollars with at most 9 decimal places ("500", "12.5").
	LimitUSD string `json:"limit_usd"`
	// Level is LevelGroup, LevelUser, LevelEachUser or
	// LevelServicePrincipal.
	Level         LimitLevel `json:"level"`
	Principal     ID         `json:"principal,omitempty"` // 0 for LevelEachUser
	PrincipalName string     `json:"principal_name,omitempty"`
	// Service restricts the budget to one model service; 0 for all.
	Service     ID     `json:"service,omitempty"`
	ServiceName string `json:"service_name,omitempty"`
	// Tags restrict it to calls whose request tags hold every pair.
	Tags    []TagCond `json:"tags,omitempty"`
	Owner   ID        `json:"owner,omitempty"`
	Comment string    `json:"comment,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

func limitKey(level LimitLevel, principal ID) string {
	if principal == 0 {
		return string(level)
	}
	return string(level) + " " + strconv.FormatInt(int64(principal), 10)
}

// limitTarget resolves the securable a rate limit is set on: a model
// service, or a connection (requests only).
func (tx *Tx) limitTarget(typ SecurableType, path []string, verb string) (*Securable, error) {
	tx.audit(typ, displayPath(path))
	if typ != TypeModelService && typ != TypeConnection {
		return nil, Errorf(CodeNotSupported, "rate limits apply to model services and connections")
	}
	s, err := tx.m.Lookup(typ, path)
	if err != nil {
		return nil, err
	}
	tx.auditName = s.FullName()
	if err := tx.checkManage(s, verb+" on "+strings.ToLower(string(typ))+" "+s.FullName()); err != nil {
		return nil, err
	}
	return s, nil
}

// limitPrincipal resolves the principal a level names.
func (tx *Tx) limitPrincipal(level LimitLevel, name string) (*Principal, error) {
	kind := level.principalKind()
	switch {
	case kind == "" && name != "":
		return nil, Errorf(CodeInvalidArgument, "a %s limit names no principal", strings.ToLower(string(level)))
	case kind == "":
		if level != LevelService && level != LevelEachUser {
			return nil, Errorf(CodeInvalidArgument, "unknown limit level %q", level)
		}
		return nil, nil
	case name == "":
		return nil, Errorf(CodeInvalidArgument, "a %s limit names a %s", strings.ToLower(string(level)), strings.ToLower(string(kind)))
	}
	return tx.principal(kind, name)
}

// SetRateLimit sets (replaces) the rate limit at level (and principal) on
// a model service or connection: requests and tokens per minute, 0 for a
// dimension not limited, at least one set. Connections take requests
// only. Needs the right to manage the securable.
func (tx *Tx) SetRateLimit(typ SecurableType, path []string, level LimitLevel, principal string, requests, tokens int64) error {
	s, err := tx.limitTarget(typ, path, "set a rate limit")
	if err != nil {
		return err
	}
	p, err := tx.limitPrincipal(level, principal)
	if err != nil {
		return err
	}
	switch {
	case requests < 0 || tokens < 0:
		return Errorf(CodeInvalidArgument, "rate limits must not be negative")
	case requests == 0 && tokens == 0:
		return Errorf(CodeInvalidArgument, "a rate limit sets requests or tokens per minute").
			WithHint("to remove a limit use DROP RATE LIMIT; to block a caller, revoke the privilege")
	case requests > MaxRequestsPerMinute || tokens > MaxTokensPerMinute:
		return Errorf(CodeInvalidArgument, "rate limit too large (at most %d requests and %d tokens per minute)", MaxRequestsPerMinute, int64(MaxTokensPerMinute))
	case typ == TypeConnection && tokens > 0:
		return Errorf(CodeInvalidArgument, "connections are limited in requests per minute only")
	}
	var pid ID
	if p != nil {
		pid = p.ID
	}
	opts := map[string]string{optLimitLevel: string(level), optLimitRequests: strconv.FormatInt(requests, 10),
		optLimitTokens: strconv.FormatInt(tokens, 10)}
	if pid != 0 {
		opts[optLimitPrincipal] = strconv.FormatInt(int64(pid), 10)
	}
	key := limitKey(level, pid)
	if old, ok := tx.m.Child(s.ID, TypeRateLimit, key); ok {
		cp := *old
		cp.Options = opts
		tx.do(opPutSecurable{&cp})
		return nil
	}
	n := 0
	for c := range tx.m.childrenOf[s.ID] {
		if tx.m.securables[c].Type == TypeRateLimit {
			n++
		}
	}
	if n >= MaxRateLimitsPerSecurable {
		return Errorf(CodeLimitExceeded, "%s %s has %d rate limits, the most one may have", strings.ToLower(string(typ)), s.FullName(), n)
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeRateLimit, Parent: s.ID, Name: key, Owner: tx.caller.ID,
		Options: opts, Created: tx.svc.now().UTC()}})
	return nil
}

// DropRateLimit removes the rate limit at level (and principal); a missing
// one is an error unless ifExists.
func (tx *Tx) DropRateLimit(typ SecurableType, path []string, level LimitLevel, principal string, ifExists bool) error {
	s, err := tx.limitTarget(typ, path, "drop a rate limit")
	if err != nil {
		return err
	}
	p, err := tx.limitPrincipal(level, principal)
	if err != nil {
		return err
	}
	var pid ID
	if p != nil {
		pid = p.ID
	}
	old, ok := tx.m.Child(s.ID, TypeRateLimit, limitKey(level, pid))
	if !ok {
		if ifExists {
			return nil
		}
		what := strings.ToLower(string(level))
		if p != nil {
			what += " " + QuoteIdent(p.Name)
		}
		return Errorf(CodeNotFound, "%s %s has no rate limit for %s", strings.ToLower(string(typ)), s.FullName(), what)
	}
	tx.do(opDeleteSecurable{old.ID})
	return nil
}

// rateLimit describes rate-limit securable r on s.
func (m *Model) rateLimit(s, r *Securable) RateLimitDef {
	d := RateLimitDef{Securable: s.ID, SecurableType: s.Type, SecurableName: s.FullName(), Level: LimitLevel(r.Options[optLimitLevel])}
	d.Requests, _ = strconv.ParseInt(r.Options[optLimitRequests], 10, 64)
	d.Tokens, _ = strconv.ParseInt(r.Options[optLimitTokens], 10, 64)
	if id, err := strconv.ParseInt(r.Options[optLimitPrincipal], 10, 64); err == nil {
		d.Principal = ID(id)
		if p, ok := m.principals[d.Principal]; ok {
			d.PrincipalName = p.Name
		}
	}
	return d
}

var levelOrder = map[LimitLevel]int{LevelService: 0, LevelEachUser: 1, LevelUser: 2, LevelServicePrincipal: 3, LevelGroup: 4}

func sortRateLimits(out []RateLimitDef) {
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.SecurableName != b.SecurableName {
			return a.SecurableName < b.SecurableName
		}
		if levelOrder[a.Level] != levelOrder[b.Level] {
			return levelOrder[a.Level] < levelOrder[b.Level]
		}
		return a.PrincipalName < b.PrincipalName
	})
}

// RateLimits returns the rate limits defined on securable id (a model
// service or connection), service level first.
func (m *Model) RateLimits(id ID) []RateLimitDef {
	s, ok := m.securables[id]
	if !ok {
		return nil
	}
	var out []RateLimitDef
	for c := range m.childrenOf[id] {
		if r := m.securables[c]; r.Type == TypeRateLimit {
			out = append(out, m.rateLimit(s, r))
		}
	}
	sortRateLimits(out)
	return out
}

// AllRateLimits returns every rate limit of the catalog, by securable.
func (m *Model) AllRateLimits() []RateLimitDef {
	var out []RateLimitDef
	for _, r := range m.securables {
		if r.Type == TypeRateLimit {
			if s, ok := m.securables[r.Parent]; ok {
				out = append(out, m.rateLimit(s, r))
			}
		}
	}
	sortRateLimits(out)
	return out
}

// ParseUSD checks a budget amount: a positive decimal number of US
// dollars, at most 9 decimal places, at most 9,000,000,000; returned
// canonically (no leading zeros, no trailing decimal zeros).
func ParseBudgetUSD(s string) (string, error) {
	t := strings.TrimSpace(s)
	whole, frac, dot := strings.Cut(t, ".")
	bad := func() (string, error) {
		return "", Errorf(CodeInvalidArgument, "invalid budget limit %q: a positive number of US dollars with at most 9 decimal places, at most 9000000000", s)
	}
	if whole == "" || (dot && frac == "") || len(frac) > 9 || len(whole) > 10 {
		return bad()
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return bad()
		}
	}
	whole = strings.TrimLeft(whole, "0")
	frac = strings.TrimRight(frac, "0")
	if whole == "" {
		whole = "0"
	}
	if w, _ := strconv.ParseInt(whole, 10, 64); w > 9_000_000_000 || (w == 9_000_000_000 && frac != "") || (w == 0 && frac == "") {
		return bad()
	}
	if frac != "" {
		return whole + "." + frac, nil
	}
	return whole, nil
}

// BudgetSpec is a CREATE BUDGET statement for Tx.CreateBudget.
type BudgetSpec struct {
	Name     string
	LimitUSD string
	Level    LimitLevel
	// Principal names the user, service principal or group ("" for EACH
	// USER).
	Principal string
	// ServicePath is the model service it is restricted to (nil: all).
	ServicePath []string
	Tags        []TagCond
	IfNotExists bool
	Comment     *string
}

// BudgetByName finds a budget (names are unique in the metastore).
func (m *Model) BudgetByName(name string) (*Securable, bool) {
	for _, s := range m.securables {
		if s.Type == TypeBudget && s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// CreateBudget creates a budget. Metastore admins only.
func (tx *Tx) CreateBudget(b BudgetSpec) error {
	tx.audit(TypeBudget, QuoteIdent(b.Name))
	if err := validObjectName(TypeBudget, b.Name); err != nil {
		return err
	}
	if err := tx.requireAdmin("create budget " + QuoteIdent(b.Name)); err != nil {
		return err
	}
	usd, err := ParseBudgetUSD(b.LimitUSD)
	if err != nil {
		return err
	}
	if b.Level == LevelService {
		return Errorf(CodeInvalidArgument, "a budget is FOR GROUP, USER, EACH USER or SERVICE PRINCIPAL")
	}
	p, err := tx.limitPrincipal(b.Level, b.Principal)
	if err != nil {
		return err
	}
	parent := tx.m.Metastore()
	if b.ServicePath != nil {
		if parent, err = tx.m.Lookup(TypeModelService, b.ServicePath); err != nil {
			return err
		}
	}
	if len(b.Tags) > MaxBudgetTags {
		return Errorf(CodeInvalidArgument, "a budget has at most %d tag conditions", MaxBudgetTags)
	}
	seen := map[string]bool{}
	tags := make([][2]string, 0, len(b.Tags))
	for _, t := range b.Tags {
		if err := ValidTag(t.Key, t.Value); err != nil {
			return err
		}
		if seen[t.Key] {
			return Errorf(CodeInvalidArgument, "tag %q is given more than once", t.Key)
		}
		seen[t.Key] = true
		tags = append(tags, [2]string{t.Key, t.Value})
	}
	if _, ok := tx.m.BudgetByName(b.Name); ok {
		if b.IfNotExists {
			return nil
		}
		return Errorf(CodeAlreadyExists, "budget %s already exists", QuoteIdent(b.Name))
	}
	n := 0
	for _, s := range tx.m.securables {
		if s.Type == TypeBudget {
			n++
		}
	}
	if n >= MaxBudgets {
		return Errorf(CodeLimitExceeded, "the catalog has %d budgets, the most it may have", n)
	}
	opts := map[string]string{optBudgetUSD: usd, optLimitLevel: string(b.Level)}
	if p != nil {
		opts[optLimitPrincipal] = strconv.FormatInt(int64(p.ID), 10)
	}
	if len(tags) > 0 {
		j, _ := json.Marshal(tags)
		opts[optBudgetTags] = string(j)
	}
	tx.do(opPutSecurable{&Securable{ID: tx.newID(), Type: TypeBudget, Parent: parent.ID, Name: b.Name, Owner: tx.caller.ID,
		Comment: deref(b.Comment), Options: opts, Created: tx.svc.now().UTC()}})
	return nil
}

// DropBudget drops a budget. Metastore admins only.
func (tx *Tx) DropBudget(name string, ifExists bool) error {
	tx.audit(TypeBudget, QuoteIdent(name))
	if err := tx.requireAdmin("drop budget " + QuoteIdent(name)); err != nil {
		return err
	}
	s, ok := tx.m.BudgetByName(name)
	if !ok {
		if ifExists {
			return nil
		}
		return Errorf(CodeNotFound, "budget %s does not exist", QuoteIdent(name))
	}
	tx.do(opDeleteSecurable{s.ID})
	return nil
}

// budget describes budget securable s.
func (m *Model) budget(s *Securable) BudgetDef {
	d := BudgetDef{Name: s.Name, LimitUSD: s.Options[optBudgetUSD], Level: LimitLevel(s.Options[optLimitLevel]),
		Owner: s.Owner, Comment: s.Comment, Created: s.Created}
	if id, err := strconv.ParseInt(s.Options[optLimitPrincipal], 10, 64); err == nil {
		d.Principal = ID(id)
		if p, ok := m.principals[d.Principal]; ok {
			d.PrincipalName = p.Name
		}
	}
	if par, ok := m.securables[s.Parent]; ok && par.Type == TypeModelService {
		d.Service, d.ServiceName = par.ID, par.FullName()
	}
	var tags [][2]string
	if json.Unmarshal([]byte(s.Options[optBudgetTags]), &tags) == nil {
		for _, t := range tags {
			d.Tags = append(d.Tags, TagCond{Key: t[0], Value: t[1]})
		}
	}
	return d
}

// Budgets returns every budget sorted by name.
func (m *Model) Budgets() []BudgetDef {
	var out []BudgetDef
	for _, s := range m.securables {
		if s.Type == TypeBudget {
			out = append(out, m.budget(s))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TransitiveMembers returns the users and service principals in group g,
// directly or through nested groups, sorted by ID ("account users": every
// user and service principal). The runtime engine needs them for group
// rate limits and budgets.
func (m *Model) TransitiveMembers(g ID) []ID {
	var out []ID
	if g == m.accountUsrs {
		for _, p := range m.principals {
			if p.Kind != KindGroup {
				out = append(out, p.ID)
			}
		}
	} else {
		seen := map[ID]bool{g: true}
		queue := []ID{g}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			for mem := range m.members[cur] {
				if seen[mem] {
					continue
				}
				seen[mem] = true
				if p := m.principals[mem]; p != nil && p.Kind == KindGroup {
					queue = append(queue, mem)
				} else if p != nil {
					out = append(out, mem)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// LimitGroupMembers returns, for every group a group-level rate limit or
// budget names, its users and service principals (TransitiveMembers):
// what the runtime engine needs besides the definitions.
func (m *Model) LimitGroupMembers() map[ID][]ID {
	out := map[ID][]ID{}
	for _, s := range m.securables {
		if (s.Type == TypeRateLimit || s.Type == TypeBudget) && LimitLevel(s.Options[optLimitLevel]) == LevelGroup {
			if id, err := strconv.ParseInt(s.Options[optLimitPrincipal], 10, 64); err == nil {
				if _, done := out[ID(id)]; !done {
					out[ID(id)] = m.TransitiveMembers(ID(id))
				}
			}
		}
	}
	return out
}

// String renders the definition's scope as SQL does ("EACH USER",
// `USER "alice@example.com"`).
func (d RateLimitDef) Scope() string { return scopeText(d.Level, d.PrincipalName) }

// Scope renders the budget's scope as SQL does.
func (d BudgetDef) Scope() string { return scopeText(d.Level, d.PrincipalName) }

func scopeText(l LimitLevel, name string) string {
	if l.principalKind() == "" {
		return string(l)
	}
	return fmt.Sprintf("%s %s", l, QuoteIdent(name))
}
