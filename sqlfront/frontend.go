package sqlfront

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/parser"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
	"github.com/mandatehq/mandate/sqlfront/systables"
)

// Config configures the front end.
type Config struct {
	Catalog *catalog.Service
	Logger  zerolog.Logger
	// ServerVersion is reported as server_version (default "16.4").
	ServerVersion string
	// Query runs SELECTs over system tables (see package systables); nil
	// refuses them with 0A000.
	Query catalog.QueryEngine
	// ConnectionStatus lists the accounts users connected for
	// per_user_oauth connections ("" = every user), for SHOW CONNECTION
	// STATUS; nil when no gateway runs in this process.
	ConnectionStatus func(ctx context.Context, user string) ([]ConnectionStatus, error)
	// BudgetStatus reports the month's spend of every budget for SHOW
	// BUDGETS (the limits engine's); nil: spent and remaining are NULL.
	BudgetStatus func(ctx context.Context) ([]BudgetStatus, error)
	// LoginAudit records failed logins (default: straight to the catalog's
	// store); a catalog.FailureAudit aggregates repeats from one source.
	LoginAudit catalog.AuditRecorder
	// StatementTimeout is the server's statement_timeout: every session
	// starts with it, and users who are not metastore admins cannot set a
	// longer one (0 = no limit).
	StatementTimeout time.Duration
	// QueryLimits bound the queries on Query (see limits.go).
	QueryLimits QueryLimits
	// CheckGuardrail checks a built-in guardrail's name and OPTIONS for
	// CREATE POLICY … USING (gateway/guard/builtin, wired by cmd/mandate):
	// it returns the guardrail's full name (system.ai.<name>) or an error
	// naming the option that is wrong. nil: CREATE POLICY … USING is
	// refused (0A000).
	CheckGuardrail func(name string, options map[string]string) (string, error)
}

// ConnectionStatus is one user's connected account on a per_user_oauth
// connection (no secrets).
type ConnectionStatus struct {
	User, Connection       string
	ConnectedAt, ExpiresAt time.Time // ExpiresAt: the current access token's; zero if unknown
	Scopes                 []string
	Refreshable            bool // a refresh token is stored
}

// Frontend implements pgwire.Handler and pgwire.Authenticator over the catalog.
type Frontend struct {
	cat     *catalog.Service
	log     zerolog.Logger
	version string
	sys     *systables.Engine // nil without Config.Query
	status  func(ctx context.Context, user string) ([]ConnectionStatus, error)
	budgets func(ctx context.Context) ([]BudgetStatus, error)
	logins  catalog.AuditRecorder
	// stmtTimeout is Config.StatementTimeout.
	stmtTimeout time.Duration
	adm         *admission // nil without Config.Query
	guardCheck  func(name string, options map[string]string) (string, error)
}

var (
	_ pgwire.AuthObserver       = (*Frontend)(nil)
	_ pgwire.Handler            = (*Frontend)(nil)
	_ pgwire.Authenticator      = (*Frontend)(nil)
	_ pgwire.Session            = (*Session)(nil)
	_ pgwire.Superusers         = (*Frontend)(nil)
	_ pgwire.StatementTimeouter = (*Session)(nil)
	_ pgwire.ImplicitTx         = (*Session)(nil)
	_ pgwire.Statement          = (*stmt)(nil)
)

// New returns a front end.
func New(cfg Config) *Frontend {
	v := cfg.ServerVersion
	if v == "" {
		v = "16.4"
	}
	f := &Frontend{cat: cfg.Catalog, log: cfg.Logger, version: v, status: cfg.ConnectionStatus, budgets: cfg.BudgetStatus, logins: cfg.LoginAudit,
		stmtTimeout: max(cfg.StatementTimeout, 0), guardCheck: cfg.CheckGuardrail}
	if f.logins == nil {
		f.logins = catalog.AuditRecorderFunc(func(ctx context.Context, ev catalog.AuditEvent) error {
			return cfg.Catalog.AppendAudit(ctx, ev)
		})
	}
	if cfg.Query != nil {
		f.adm = newAdmission(cfg.QueryLimits, f.isAdmin, cfg.Logger)
		f.sys = systables.New(cfg.Catalog, admittedEngine{q: cfg.Query, a: f.adm})
	}
	return f
}

// AuthFailed implements pgwire.AuthObserver: a failed login is an audit
// event (service_name sql, action_name LOGIN, decision deny).
func (f *Frontend) AuthFailed(ctx context.Context, info pgwire.ConnInfo) {
	ip := info.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	ev := catalog.AuditEvent{
		EventID: catalog.NewEventID(), Time: time.Now(), Service: "sql", Action: "LOGIN",
		UserIdentity: info.User, RunBy: info.User, SourceIP: ip, UserAgent: info.ApplicationName,
		StatusCode: 1, SQLState: "28P01", ErrorMessage: "password authentication failed",
		Decision: "deny", Reason: "password authentication failed",
	}
	if err := f.logins.Record(ctx, ev); err != nil {
		f.log.Error().Err(err).Str("user", info.User).Msg("could not audit a failed login")
	}
}

// Verifier implements pgwire.Authenticator: users and service principals
// with a password may log in; groups never.
func (f *Frontend) Verifier(_ context.Context, user string) (v string, ok bool, err error) {
	f.cat.Read(func(m *catalog.Model) {
		p, found := m.PrincipalByName(user)
		if found && p.Kind != catalog.KindGroup && p.Password != "" {
			v, ok = p.Password, true
		}
	})
	return v, ok, nil
}

// Connect implements pgwire.Handler. The database name is the session's
// current catalog; an unknown one is 3D000.
func (f *Frontend) Connect(_ context.Context, info pgwire.ConnInfo) (pgwire.Session, error) {
	db := info.Database
	if db == "" {
		db = info.User
	}
	var (
		exists, userOK, admin bool
	)
	f.cat.Read(func(m *catalog.Model) {
		if p, ok := m.PrincipalByName(info.User); ok && p.Kind != catalog.KindGroup {
			userOK = true
			admin = m.IsAdmin(p.ID)
		}
		if ms := m.Metastore(); ms != nil {
			_, exists = m.Child(ms.ID, catalog.TypeCatalog, db)
		}
	})
	if !userOK {
		return nil, &pgwire.Error{Severity: "FATAL", Code: "28000", Message: "role \"" + info.User + "\" does not exist"}
	}
	if !exists {
		return nil, &pgwire.Error{Severity: "FATAL", Code: "3D000", Message: "database \"" + db + "\" does not exist",
			Hint: "the database name is a Mandate catalog, e.g. dbname=system"}
	}
	host := info.RemoteAddr
	if h, _, err := net.SplitHostPort(info.RemoteAddr); err == nil {
		host = h
	}
	s := &Session{f: f, user: info.User, catalog: db, sourceIP: host, id: uuid.NewString(),
		params: defaultParams(f.version), changed: map[string]string{}}
	s.params["session_authorization"] = info.User
	s.params["statement_timeout"] = formatTimeout(f.stmtTimeout)
	s.params["is_superuser"] = map[bool]string{true: "on", false: "off"}[admin]
	// Startup parameters go through the same validation as SET; unknown
	// ones are ignored (as PostgreSQL does for GUCs it does not know only
	// with a warning, drivers send many), invalid values refuse the login.
	for _, k := range sortedKeys(info.Params) {
		lk := strings.ToLower(k)
		if lk == "user" || lk == "database" || lk == "replication" || lk == "options" || readOnlyParams[lk] {
			continue
		}
		if _, known := s.params[lk]; !known && !strings.Contains(lk, ".") {
			continue
		}
		if err := s.setParam(lk, info.Params[k]); err != nil {
			if pe, ok := err.(*pgwire.Error); ok {
				pe.Severity = "FATAL"
			}
			return nil, err
		}
	}
	s.resetTo = make(map[string]string, len(s.params))
	for k, v := range s.params {
		s.resetTo[k] = v
	}
	s.changed["is_superuser"] = s.params["is_superuser"]
	s.changed["session_authorization"] = info.User
	return s, nil
}

// Session is one client connection's SQL state.
type Session struct {
	f        *Frontend
	user     string
	catalog  string // current catalog (the connection's database)
	sourceIP string
	id       string
	// forwarded: the session of a statement another replica forwarded
	// (ForwardedStatement): its changes need no forwarded form.
	forwarded bool

	mu      sync.Mutex
	params  map[string]string
	resetTo map[string]string // values RESET returns to: defaults plus startup parameters
	changed map[string]string
	tx      txn // transaction state (txblock.go)
}

// Prepare implements pgwire.Session.
func (s *Session) Prepare(ctx context.Context, sql string, paramOIDs []uint32, multi bool) ([]pgwire.Statement, error) {
	pieces := parser.Split(sql)
	if !multi && len(pieces) > 1 {
		return nil, pgwire.Errorf("42601", "cannot insert multiple commands into a prepared statement")
	}
	out := make([]pgwire.Statement, 0, len(pieces))
	for _, p := range pieces {
		st, err := s.prepareOne(ctx, p.Text, paramOIDs)
		if err != nil {
			return nil, sqlError(err, sql, p.Offset)
		}
		st.query, st.offset = sql, p.Offset
		// A Query message with one statement commits it on its own; several
		// run in one implicit transaction (see txblock.go).
		st.autocommit = multi && len(pieces) == 1
		st.inMulti = multi && len(pieces) > 1
		out = append(out, st)
	}
	return out, nil
}

func (s *Session) prepareOne(ctx context.Context, text string, paramOIDs []uint32) (*stmt, error) {
	if parser.IsGovernance(text) {
		ast, err := parser.ParseStatement(text)
		if err != nil {
			return nil, err
		}
		return s.governance(ast)
	}
	return s.pgStatement(ctx, text, paramOIDs)
}

// ChangedParameters implements pgwire.Session.
func (s *Session) ChangedParameters() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.changed) == 0 {
		return nil
	}
	out := s.changed
	s.changed = map[string]string{}
	return out
}

// Close implements pgwire.Session.
func (s *Session) Close() {}

func (s *Session) caller(statement string) catalog.Caller {
	s.mu.Lock()
	app := s.params["application_name"]
	s.mu.Unlock()
	return catalog.Caller{Principal: s.user, SourceIP: s.sourceIP, UserAgent: app, SessionID: s.id, Statement: statement}
}

// stmt is a prepared statement: its result shape and how to run it.
type stmt struct {
	cols   []pgwire.Column
	params []uint32
	run    func(ctx context.Context, params []pgwire.Param, w pgwire.RowWriter) (string, error)
	// change, for a statement that is one catalog change planned from the
	// statement alone (Session.write): the change, as run commits it.
	change func() catalog.Statement
	// allowedInFailedTx is true for COMMIT/ROLLBACK.
	allowedInFailedTx bool
	// autocommit: the only statement of a Query message, committed on its
	// own unless a transaction block is open; inMulti: one of several.
	autocommit, inMulti bool
	// dealloc marks DEALLOCATE/DISCARD ALL (see pgwire.Deallocator).
	dealloc     bool
	deallocName string
	deallocAll  bool
	s           *Session
	query       string
	offset      int
}

func (st *stmt) ParamOIDs() []uint32      { return st.params }
func (st *stmt) Columns() []pgwire.Column { return st.cols }

// Deallocates implements pgwire.Deallocator (a no-op for other statements).
func (st *stmt) Deallocates() (string, bool) {
	if !st.dealloc {
		return "", false
	}
	return st.deallocName, st.deallocAll
}

// Execute implements pgwire.Statement.
func (st *stmt) Execute(ctx context.Context, params []pgwire.Param, w pgwire.RowWriter) (string, error) {
	if st.s.TxStatus() == 'E' && !st.allowedInFailedTx {
		return "", pgwire.Errorf("25P02", "current transaction is aborted, commands ignored until end of transaction block")
	}
	if len(params) != len(st.params) {
		return "", pgwire.Errorf("08P01", "statement takes %d parameters, %d given", len(st.params), len(params))
	}
	// pgwire bounds ctx by the session's statement_timeout
	// (Session.StatementTimeout).
	tag, err := st.run(ctx, params, w)
	return tag, sqlError(err, st.query, st.offset)
}

func textCols(names ...string) []pgwire.Column {
	cols := make([]pgwire.Column, len(names))
	for i, n := range names {
		cols[i] = pgwire.Column{Name: n, TypeOID: 25}
	}
	return cols
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
