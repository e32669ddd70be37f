package limits

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// Level is the scope a rate limit or budget is defined at.
type Level uint8

const (
	// LevelService is the whole model service or connection, shared by
	// every caller (rate limits only).
	LevelService Level = iota + 1
	// LevelEachUser is one limit or budget per subject (FOR EACH USER).
	LevelEachUser
	// LevelUser is one user (FOR USER "x").
	LevelUser
	// LevelServicePrincipal is one service principal (FOR SERVICE
	// PRINCIPAL "x"), as subject or as actor.
	LevelServicePrincipal
	// LevelGroup is one group, shared by its members (FOR GROUP "x").
	LevelGroup
)

// String returns the level in SQL spelling (SERVICE, EACH USER, USER,
// SERVICE PRINCIPAL, GROUP).
func (l Level) String() string {
	switch l {
	case LevelService:
		return "SERVICE"
	case LevelEachUser:
		return "EACH USER"
	case LevelUser:
		return "USER"
	case LevelServicePrincipal:
		return "SERVICE PRINCIPAL"
	case LevelGroup:
		return "GROUP"
	}
	return fmt.Sprintf("Level(%d)", uint8(l))
}

// scope renders a level and principal for messages: `service`, `each
// user`, `user "alice"`, `group "analysts"`.
func scope(l Level, name string) string {
	switch l {
	case LevelService:
		return "service"
	case LevelEachUser:
		return "each user"
	case LevelUser, LevelServicePrincipal, LevelGroup:
		return strings.ToLower(l.String()) + " " + catalog.QuoteIdent(name)
	}
	return l.String()
}

// Dim is a rate-limit dimension.
type Dim uint8

const (
	Requests Dim = iota // requests per minute
	Tokens              // tokens per minute
)

func (d Dim) String() string {
	if d == Tokens {
		return "tokens"
	}
	return "requests"
}

// SecurableKind is what a call addresses.
type SecurableKind uint8

const (
	// ModelService: an LLM call; requests and tokens per minute, budgets.
	ModelService SecurableKind = iota + 1
	// Connection: an MCP call; requests per minute, never charged to a
	// budget.
	Connection
)

func (k SecurableKind) String() string {
	if k == Connection {
		return "connection"
	}
	return "model service"
}

// RateLimit is one rate-limit definition on a model service or MCP
// connection (ALTER ... SET RATE LIMIT).
type RateLimit struct {
	Securable     catalog.ID
	SecurableName string // full name, for messages
	Level         Level  // any level
	// Principal is the user, service principal or group (LevelUser,
	// LevelServicePrincipal, LevelGroup); 0 otherwise.
	Principal     catalog.ID
	PrincipalName string
	// Requests and Tokens are the limits per minute; 0 means the dimension
	// is not limited. A definition with both 0 limits nothing (to block a
	// caller, revoke the privilege instead). Connections have no tokens.
	Requests int64
	Tokens   int64
}

// Tag is one request-tag condition of a budget (WHERE TAG key = 'value').
type Tag struct{ Key, Value string }

// Budget is one budget definition (CREATE BUDGET): a cap on the settled
// cost of model calls in its scope per calendar month (UTC).
type Budget struct {
	Name  string
	Limit Money // per calendar month (UTC)
	// Level is LevelGroup, LevelUser, LevelEachUser or
	// LevelServicePrincipal.
	Level         Level
	Principal     catalog.ID // 0 for LevelEachUser
	PrincipalName string
	// Service restricts the budget to one model service (ON MODEL
	// SERVICE); 0 for every model service.
	Service     catalog.ID
	ServiceName string
	// Tags restrict the budget to calls whose request tags hold every
	// pair (WHERE TAG k = 'v' [AND ...]); empty for every call.
	Tags []Tag
}

// Definitions are the limits and budgets of one catalog revision, built
// by the integrator and installed with Limiter.Apply.
type Definitions struct {
	RateLimits []RateLimit
	Budgets    []Budget
	// Members lists, for every group named by a group-level rate limit or
	// budget, its members, direct and inherited (users and service
	// principals; nested groups flattened). A group missing here has no
	// members.
	Members map[catalog.ID][]catalog.ID
}

// ErrInvalid wraps every definition error of Apply.
var ErrInvalid = errors.New("limits: invalid definitions")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func (r *RateLimit) validate() error {
	if r.Securable == 0 {
		return invalidf("rate limit without a securable")
	}
	switch r.Level {
	case LevelService, LevelEachUser:
		if r.Principal != 0 {
			return invalidf("rate limit at level %s names a principal", r.Level)
		}
	case LevelUser, LevelServicePrincipal, LevelGroup:
		if r.Principal == 0 {
			return invalidf("rate limit at level %s without a principal", r.Level)
		}
	default:
		return invalidf("rate limit with unknown level %d", r.Level)
	}
	if r.Requests < 0 || r.Tokens < 0 {
		return invalidf("negative rate limit on %s", r.SecurableName)
	}
	return nil
}

func (b *Budget) validate() error {
	if b.Name == "" {
		return invalidf("budget without a name")
	}
	if b.Limit < 0 {
		return invalidf("budget %s: negative limit", b.Name)
	}
	switch b.Level {
	case LevelEachUser:
		if b.Principal != 0 {
			return invalidf("budget %s: FOR EACH USER names a principal", b.Name)
		}
	case LevelUser, LevelServicePrincipal, LevelGroup:
		if b.Principal == 0 {
			return invalidf("budget %s: level %s without a principal", b.Name, b.Level)
		}
	default:
		return invalidf("budget %s: level %s is not a budget level", b.Name, b.Level)
	}
	for _, t := range b.Tags {
		if t.Key == "" {
			return invalidf("budget %s: empty tag key", b.Name)
		}
	}
	return nil
}

// ident is the identity of a budget's running state across revisions: the
// name and the scope. A new limit keeps the spend; a new scope starts a
// new ledger (whose spend is loaded for its scope).
func (b *Budget) ident() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\x00%d\x00%d\x00%d", b.Name, b.Level, b.Principal, b.Service)
	tags := slices.Clone(b.Tags)
	slices.SortFunc(tags, func(x, y Tag) int {
		if c := strings.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		return strings.Compare(x.Value, y.Value)
	})
	for _, t := range tags {
		sb.WriteString("\x00" + t.Key + "\x00" + t.Value)
	}
	return sb.String()
}

// matches reports whether the budget's service and tag filters admit a
// call to service with tags.
func (b *Budget) matches(service catalog.ID, tags map[string]string) bool {
	if b.Service != 0 && b.Service != service {
		return false
	}
	for _, t := range b.Tags {
		if v, ok := tags[t.Key]; !ok || v != t.Value {
			return false
		}
	}
	return true
}
