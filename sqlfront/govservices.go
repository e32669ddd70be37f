package sqlfront

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/parser"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// Statements of the LLM gateway's objects: model services and model
// provider services, rate limits, access tokens and budgets. The
// generic statements (DROP, ALTER ... OWNER TO / RENAME TO, COMMENT ON,
// GRANT, SHOW GRANTS, EXPLAIN ACCESS, DESCRIBE) reach them through the
// catalog's type registry like every other securable.

const oidNumeric = 1700

// BudgetStatus is the runtime state of one budget for SHOW BUDGETS,
// from the limits engine (Config.BudgetStatus): the month's settled
// spend and what remains, in billionths of a US dollar. A FOR EACH USER
// budget has one entry per user with spend (Principal names the user).
type BudgetStatus struct {
	Budget    string
	Principal string
	// SpentNanos and RemainingNanos: billionths of a US dollar.
	SpentNanos, RemainingNanos int64
	// Unavailable is set when the engine could not load the spend.
	Unavailable bool
}

// serviceStatement plans the statements of this file; ok false for any
// other statement.
func (s *Session) serviceStatement(ast parser.Statement) (st *stmt, ok bool, err error) {
	switch x := ast.(type) {
	case *parser.CreateService:
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, true, err
		}
		return s.write(x, x.Kind(), func(tx *catalog.Tx) error {
			if t == catalog.TypeProviderService {
				return tx.CreateProviderService(p, options(x.Options), x.IfNotExists, x.Comment)
			}
			return tx.CreateModelService(p, options(x.Options), x.IfNotExists, x.Comment)
		}), true, nil
	case *parser.AlterServiceOptions:
		t := secType(x.Type)
		p, err := s.path(t, x.Name)
		if err != nil {
			return nil, true, err
		}
		return s.write(x, x.Kind(), func(tx *catalog.Tx) error { return tx.SetServiceOptions(t, p, options(x.Options)) }), true, nil
	case *parser.SetRateLimit:
		t := secType(x.On.Type)
		p, err := s.path(t, x.On.Name)
		if err != nil {
			return nil, true, err
		}
		return s.write(x, x.Kind(), func(tx *catalog.Tx) error {
			return tx.SetRateLimit(t, p, x.For.Level, targetName(x.For), x.Requests, x.Tokens)
		}), true, nil
	case *parser.DropRateLimit:
		t := secType(x.On.Type)
		p, err := s.path(t, x.On.Name)
		if err != nil {
			return nil, true, err
		}
		return s.write(x, x.Kind(), func(tx *catalog.Tx) error {
			return tx.DropRateLimit(t, p, x.For.Level, targetName(x.For), x.IfExists)
		}), true, nil
	case *parser.ShowRateLimits:
		st, err := s.showRateLimits(x)
		return st, true, err
	case *parser.CreateAccessToken:
		st, err := s.createAccessToken(x)
		return st, true, err
	case *parser.ShowAccessTokens:
		return s.showAccessTokens(x), true, nil
	case *parser.CreateBudget:
		spec := catalog.BudgetSpec{Name: x.Name.Name, LimitUSD: x.Limit, Level: x.For.Level, Principal: targetName(x.For),
			IfNotExists: x.IfNotExists, Comment: x.Comment}
		if x.On != nil {
			p, err := s.path(catalog.TypeModelService, x.On.Name)
			if err != nil {
				return nil, true, err
			}
			spec.ServicePath = p
		}
		for _, t := range x.Tags {
			spec.Tags = append(spec.Tags, catalog.TagCond{Key: t.Key.Name, Value: t.Value})
		}
		return s.write(x, x.Kind(), func(tx *catalog.Tx) error { return tx.CreateBudget(spec) }), true, nil
	case *parser.ShowBudgets:
		return s.showBudgets(), true, nil
	case *parser.Drop:
		switch x.Type {
		case parser.ObjAccessToken:
			return s.write(x, x.Kind(), func(tx *catalog.Tx) error { return tx.DropAccessToken(x.Name[0].Name, x.IfExists) }), true, nil
		case parser.ObjBudget:
			return s.write(x, x.Kind(), func(tx *catalog.Tx) error { return tx.DropBudget(x.Name[0].Name, x.IfExists) }), true, nil
		}
	case *parser.ShowObjects:
		switch x.What {
		case "MODEL SERVICES", "MODEL PROVIDER SERVICES":
			st, err := s.showServices(x)
			return st, true, err
		}
	}
	return nil, false, nil
}

func targetName(t parser.LimitTarget) string {
	if t.Principal == nil {
		return ""
	}
	return t.Principal.Name
}

// showServices answers SHOW MODEL SERVICES and SHOW MODEL PROVIDER
// SERVICES [IN catalog[.schema]]: the services the caller may see.
func (s *Session) showServices(x *parser.ShowObjects) (*stmt, error) {
	typ := catalog.TypeModelService
	cols := textCols("name", "destinations", "fallbacks", "owner", "comment")
	if x.What == "MODEL PROVIDER SERVICES" {
		typ = catalog.TypeProviderService
		cols = textCols("name", "provider", "url", "priced_models", "owner", "comment")
	}
	in := names(x.In)
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		root := m.Metastore()
		if len(in) > 0 {
			t := catalog.TypeCatalog
			if len(in) == 2 {
				t = catalog.TypeSchema
			}
			r, err := m.Lookup(t, in)
			if err != nil {
				return nil, err
			}
			root = r
		}
		var rows [][]any
		var walk func(n *catalog.Securable)
		walk = func(n *catalog.Securable) {
			for _, c := range m.Children(n.ID) {
				switch {
				case c.Type == typ:
					if !m.CanSee(me.ID, c.ID) {
						continue
					}
					o := m.DisplayOptions(c)
					if typ == catalog.TypeModelService {
						rows = append(rows, []any{c.FullName(), o[catalog.OptDestinations], nullIfEmpty(o[catalog.OptFallbacks]),
							ownerName(m, c.Owner), nullIfEmpty(c.Comment)})
					} else {
						prices, _ := catalog.ParsePrices(o[catalog.OptPrices])
						models := make([]string, 0, len(prices))
						for k := range prices {
							models = append(models, k)
						}
						sort.Strings(models)
						rows = append(rows, []any{c.FullName(), o[catalog.OptProvider], o[catalog.OptURL], nullIfEmpty(strings.Join(models, ", ")),
							ownerName(m, c.Owner), nullIfEmpty(c.Comment)})
					}
				case c.Type == catalog.TypeCatalog || c.Type == catalog.TypeSchema:
					walk(c)
				}
			}
		}
		walk(root)
		sort.Slice(rows, func(i, j int) bool { return rows[i][0].(string) < rows[j][0].(string) })
		return rows, nil
	}), nil
}

// describeService adds the options of a model service or model provider
// service to DESCRIBE's rows: routes with current names, the api_key
// masked.
func (s *Session) describeService(m *catalog.Model, sec *catalog.Securable, rows [][]any) ([][]any, error) {
	opts := m.DisplayOptions(sec)
	for _, k := range sortedKeys(opts) {
		rows = append(rows, []any{"option." + k, opts[k]})
	}
	if sec.Type == catalog.TypeProviderService {
		secrets, err := s.f.cat.Keyring().OpenMap(sec.Secrets, catalog.SecretsAAD(sec.ID))
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(secrets) {
			rows = append(rows, []any{"option." + k, masked})
		}
		return rows, nil
	}
	dst, fb := m.ModelRoutes(sec)
	for _, r := range append(dst, fb...) {
		if r.Denied != "" {
			name := "#" + strconv.FormatInt(int64(r.Provider), 10)
			if r.ProviderService != nil {
				name = r.ProviderService.FullName()
			}
			rows = append(rows, []any{"unusable_destination", fmt.Sprintf("%s/%s: %s", name, r.Model, r.Denied)})
		}
	}
	return rows, nil
}

// showRateLimits answers SHOW RATE LIMITS [ON securable]: the limits of
// the model services and connections the caller may see.
func (s *Session) showRateLimits(x *parser.ShowRateLimits) (*stmt, error) {
	var (
		t    catalog.SecurableType
		path []string
		err  error
	)
	if x.On != nil {
		t = secType(x.On.Type)
		if path, err = s.path(t, x.On.Name); err != nil {
			return nil, err
		}
	}
	cols := []pgwire.Column{{Name: "securable_type", TypeOID: oidText}, {Name: "securable", TypeOID: oidText},
		{Name: "scope", TypeOID: oidText}, {Name: "requests_per_minute", TypeOID: oidInt8}, {Name: "tokens_per_minute", TypeOID: oidInt8}}
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		var defs []catalog.RateLimitDef
		if x.On != nil {
			sec, err := m.Lookup(t, path)
			if err != nil {
				return nil, err
			}
			if !m.CanSee(me.ID, sec.ID) {
				return nil, catalog.Errorf(catalog.CodePermissionDenied, "permission denied to see the rate limits of %s %s", strings.ToLower(string(t)), sec.FullName())
			}
			defs = m.RateLimits(sec.ID)
		} else {
			for _, d := range m.AllRateLimits() {
				if m.CanSee(me.ID, d.Securable) {
					defs = append(defs, d)
				}
			}
		}
		rows := make([][]any, 0, len(defs))
		for _, d := range defs {
			rows = append(rows, []any{string(d.SecurableType), d.SecurableName, d.Scope(), nullIfZero(d.Requests), nullIfZero(d.Tokens)})
		}
		return rows, nil
	}), nil
}

func nullIfZero(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

// createAccessToken runs CREATE ACCESS TOKEN: the token is generated here,
// only its hash goes to the catalog (and nothing of it to the audit
// record, which has the statement), and the one row answered is the only
// place the token ever appears.
func (s *Session) createAccessToken(x *parser.CreateAccessToken) (*stmt, error) {
	var lifetime int64
	if x.ExpiresIn != nil {
		d, err := catalog.ParseTokenLifetime(*x.ExpiresIn)
		if err != nil {
			return nil, err
		}
		lifetime = int64(d)
	}
	user := s.user
	if x.User != nil {
		user = x.User.Name
	}
	name, agent := "", ""
	if x.Name != nil {
		name = x.Name.Name
	}
	if x.Via != nil {
		agent = x.Via.Name
	}
	st := &stmt{s: s, cols: textCols("token")}
	st.run = func(ctx context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
		token, hash, err := catalog.NewAccessToken()
		if err != nil {
			return "", err
		}
		fn := func(tx *catalog.Tx) error {
			return tx.CreateAccessToken(name, user, agent, time.Duration(lifetime), x.Comment, hash)
		}
		if err := s.change(ctx, st.autocommit, s.statement(x, fn)); err != nil {
			return "", err
		}
		if err := w.WriteRow([]any{token}); err != nil {
			return "", err
		}
		return "SELECT 1", nil
	}
	return st, nil
}

// showAccessTokens answers SHOW ACCESS TOKENS [FOR USER u]: never the
// token; users see their own, metastore admins anyone's (without FOR:
// everyone's).
func (s *Session) showAccessTokens(x *parser.ShowAccessTokens) *stmt {
	cols := []pgwire.Column{{Name: "name", TypeOID: oidText}, {Name: "user_name", TypeOID: oidText},
		{Name: "agent", TypeOID: oidText}, {Name: "token_id", TypeOID: oidText}, {Name: "created", TypeOID: oidTimestamptz},
		{Name: "expires", TypeOID: oidTimestamptz}, {Name: "comment", TypeOID: oidText}}
	return s.read(cols, func(m *catalog.Model, me *catalog.Principal) ([][]any, error) {
		admin := m.IsAdmin(me.ID)
		var who *catalog.Principal
		switch {
		case x.For != nil:
			p, ok := m.PrincipalByName(x.For.Name)
			if !ok {
				return nil, catalog.Errorf(catalog.CodeNotFound, "user %s does not exist", catalog.QuoteIdent(x.For.Name))
			}
			who = p
		case !admin:
			who = me
		}
		if who != nil && who.ID != me.ID && !admin {
			return nil, catalog.Errorf(catalog.CodePermissionDenied, "only metastore admins may see the access tokens of other users")
		}
		var rows [][]any
		for _, t := range m.AccessTokens(who) {
			var agent, exp any
			if t.Agent != nil {
				agent = t.Agent.Name
			}
			if !t.Expires.IsZero() {
				exp = t.Expires
			}
			rows = append(rows, []any{t.Name, t.User.Name, agent, t.TokenID, t.Created, exp, nullIfEmpty(t.Comment)})
		}
		return rows, nil
	})
}

// showBudgets answers SHOW BUDGETS with the month's spend from
// Config.BudgetStatus (NULL without it). Metastore admins see every
// budget; others those that apply to them (their own, their groups',
// each user's: the definition and their own row).
func (s *Session) showBudgets() *stmt {
	cols := []pgwire.Column{{Name: "name", TypeOID: oidText}, {Name: "scope", TypeOID: oidText},
		{Name: "model_service", TypeOID: oidText}, {Name: "tags", TypeOID: oidText}, {Name: "period", TypeOID: oidText},
		{Name: "limit_usd", TypeOID: oidNumeric}, {Name: "principal", TypeOID: oidText}, {Name: "spent_usd", TypeOID: oidNumeric},
		{Name: "remaining_usd", TypeOID: oidNumeric}, {Name: "comment", TypeOID: oidText}}
	st := &stmt{s: s, cols: cols}
	st.run = func(ctx context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
		var (
			defs   []catalog.BudgetDef
			admin  bool
			err    error
			myName = s.user
		)
		if rerr := s.readModel(func(m *catalog.Model) {
			me, ok := m.PrincipalByName(s.user)
			if !ok {
				err = catalog.Errorf(catalog.CodePermissionDenied, "principal %s no longer exists", catalog.QuoteIdent(s.user))
				return
			}
			admin = m.IsAdmin(me.ID)
			for _, d := range m.Budgets() {
				if admin || d.Level == catalog.LevelEachUser || (d.Principal != 0 && m.InClosure(me.ID, d.Principal)) {
					defs = append(defs, d)
				}
			}
		}); rerr != nil {
			return "", rerr
		}
		if err != nil {
			return "", err
		}
		var status map[string][]BudgetStatus
		if s.f.budgets != nil && len(defs) > 0 {
			list, err := s.f.budgets(ctx)
			if err != nil {
				return "", catalog.Errorf(catalog.CodeUnavailable, "budget status: %v", err)
			}
			status = map[string][]BudgetStatus{}
			for _, b := range list {
				status[b.Budget] = append(status[b.Budget], b)
			}
		}
		n := 0
		for _, d := range defs {
			tags := make([]string, len(d.Tags))
			for i, t := range d.Tags {
				tags[i] = t.Key + " = " + parser.QuoteString(t.Value)
			}
			base := []any{d.Name, d.Scope(), nullIfEmpty(d.ServiceName), nullIfEmpty(strings.Join(tags, " AND ")), "MONTH",
				decimalUSD(d.LimitUSD)}
			var rows [][]any
			principal := any(nil)
			if d.Level != catalog.LevelEachUser {
				principal = d.PrincipalName
			}
			sts, known := status[d.Name]
			switch {
			case status == nil:
				rows = append(rows, []any{principal, nil, nil})
			case d.Level == catalog.LevelEachUser:
				// The definition first, always: what a user who has not
				// spent this month has (spent 0, the whole limit), then a
				// row per user with spend.
				def := []any{nil, nanoUSD(0), nanoAmount(d.LimitUSD)}
				for _, b := range sts {
					if b.Unavailable {
						def = []any{nil, nil, nil}
					}
				}
				rows = append(rows, def)
				for _, b := range sts {
					if b.Principal != "" && !b.Unavailable && (admin || b.Principal == myName) {
						rows = append(rows, statusRow(b.Principal, b))
					}
				}
			case known:
				rows = append(rows, statusRow(principal, sts[0]))
			default: // installed later than this revision, or never charged
				rows = append(rows, []any{principal, nil, nil})
			}
			for _, r := range rows {
				if err := w.WriteRow(append(append(append([]any{}, base...), r...), nullIfEmpty(d.Comment))); err != nil {
					return "", err
				}
				n++
			}
		}
		return fmt.Sprintf("SELECT %d", n), nil
	}
	return st
}

func statusRow(principal any, b BudgetStatus) []any {
	if b.Unavailable {
		return []any{principal, nil, nil}
	}
	return []any{principal, nanoUSD(b.SpentNanos), nanoUSD(b.RemainingNanos)}
}

// decimalUSD is a canonical amount ("12.5") as a numeric value.
func decimalUSD(s string) any {
	whole, frac, _ := strings.Cut(s, ".")
	n, ok := new(big.Int).SetString(whole+frac, 10)
	if !ok {
		return nil
	}
	return pgtype.Numeric{Int: n, Exp: -int32(len(frac)), Valid: true}
}

// nanoAmount is a canonical amount ("12.5") as a numeric value with 9
// decimal places, as nanoUSD renders the engine's figures.
func nanoAmount(s string) any {
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 9 {
		return decimalUSD(s)
	}
	return decimalUSD(whole + "." + frac + strings.Repeat("0", 9-len(frac)))
}

// nanoUSD is an amount in billionths of a dollar as a numeric value with
// 9 decimal places.
func nanoUSD(n int64) any {
	return pgtype.Numeric{Int: big.NewInt(n), Exp: -9, Valid: true}
}
