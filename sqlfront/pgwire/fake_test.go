package pgwire

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// fakeAuth serves verifiers from a map; "" means the user has no password.
type fakeAuth struct {
	verifiers map[string]string
}

var _ Authenticator = (*fakeAuth)(nil)

func (a *fakeAuth) Verifier(_ context.Context, user string) (string, bool, error) {
	if user == "autherr" {
		return "", false, errors.New("catalog unavailable: secret detail")
	}
	v, ok := a.verifiers[user]
	if !ok || v == "" {
		return "", false, nil
	}
	return v, true, nil
}

// fakeHandler creates fakeSessions and lets tests observe them.
type fakeHandler struct {
	fuzzing bool // no blocking, panicking or huge statements

	// started receives the name of every blocking statement that starts;
	// ended receives the context cause it saw when it stopped.
	started chan string
	ended   chan error

	mu       sync.Mutex
	sessions []*fakeSession
}

var (
	_ Handler    = (*fakeHandler)(nil)
	_ Superusers = (*fakeHandler)(nil)
)

func newFakeHandler() *fakeHandler {
	return &fakeHandler{started: make(chan string, 64), ended: make(chan error, 64)}
}

func (h *fakeHandler) Connect(_ context.Context, info ConnInfo) (Session, error) {
	if info.Database == "nodb" {
		return nil, &Error{Severity: "FATAL", Code: "3D000", Message: fmt.Sprintf("database %q does not exist", info.Database)}
	}
	s := &fakeSession{h: h, info: info, tx: 'I', closed: make(chan struct{})}
	if info.User == "admin" {
		s.changed = map[string]string{"is_superuser": "on", "mandate_role": "admin"}
	}
	h.mu.Lock()
	h.sessions = append(h.sessions, s)
	h.mu.Unlock()
	return s, nil
}

// IsSuperuser implements Superusers: admin is the superuser.
func (h *fakeHandler) IsSuperuser(_ context.Context, user string) bool { return user == "admin" }

func (h *fakeHandler) lastSession() *fakeSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sessions) == 0 {
		return nil
	}
	return h.sessions[len(h.sessions)-1]
}

// fakeSession implements a tiny statement language; see statement.
type fakeSession struct {
	h       *fakeHandler
	info    ConnInfo
	tx      byte
	changed map[string]string
	types   *pgtype.Map

	closeOnce sync.Once
	closed    chan struct{}
}

var _ Session = (*fakeSession)(nil)

func (s *fakeSession) Prepare(ctx context.Context, sql string, paramOIDs []uint32, multi bool) ([]Statement, error) {
	var parts []string
	for p := range strings.SplitSeq(sql, ";") {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "--") {
			continue
		}
		if p == "deafprepare" && !s.h.fuzzing {
			// Preparing takes until the command is cancelled, and then
			// succeeds anyway (an engine step that does not look at ctx).
			s.h.started <- "deafprepare"
			<-ctx.Done()
			continue
		}
		parts = append(parts, p)
	}
	if !multi && len(parts) > 1 {
		return nil, Errorf("42601", "cannot insert multiple commands into a prepared statement")
	}
	stmts := make([]Statement, 0, len(parts))
	for _, p := range parts {
		st, err := s.statement(p, paramOIDs)
		if err != nil {
			return nil, err
		}
		stmts = append(stmts, st)
	}
	return stmts, nil
}

func (s *fakeSession) TxStatus() byte { return s.tx }

func (s *fakeSession) Fail() {
	if s.tx == 'T' {
		s.tx = 'E'
	}
}

func (s *fakeSession) ChangedParameters() map[string]string {
	c := s.changed
	s.changed = nil
	return c
}

func (s *fakeSession) Close() { s.closeOnce.Do(func() { close(s.closed) }) }

func (s *fakeSession) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// fakeStmt is a Statement backed by a function.
type fakeStmt struct {
	params []uint32
	cols   []Column
	exec   func(ctx context.Context, params []Param, w RowWriter) (string, error)
}

var _ Statement = (*fakeStmt)(nil)

func (f *fakeStmt) ParamOIDs() []uint32 { return f.params }
func (f *fakeStmt) Columns() []Column   { return f.cols }
func (f *fakeStmt) Execute(ctx context.Context, params []Param, w RowWriter) (string, error) {
	return f.exec(ctx, params, w)
}

// Values of the "types" statement, one column per type.
var typesCols = []Column{
	{"b", pgtype.BoolOID}, {"i2", pgtype.Int2OID}, {"i4", pgtype.Int4OID}, {"i8", pgtype.Int8OID},
	{"f4", pgtype.Float4OID}, {"f8", pgtype.Float8OID}, {"num", pgtype.NumericOID}, {"t", pgtype.TextOID},
	{"empty", pgtype.TextOID}, {"ba", pgtype.ByteaOID}, {"d", pgtype.DateOID}, {"ts", pgtype.TimestamptzOID},
	{"u", pgtype.UUIDOID}, {"j", pgtype.JSONOID}, {"jb", pgtype.JSONBOID},
}

func typesRow() []any {
	return []any{
		true, int16(-12), int32(123456), int64(1) << 40,
		float32(1.5), float64(-3.25), "12345.678", "héllo wörld",
		"", []byte{0, 1, 2, 255}, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC),
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `{"a":1}`, []byte(`{"b": [1, 2]}`),
	}
}

// statement compiles one statement of the fake language:
//
//	select 1            one int4 row
//	types               one row of every type in typesCols, then a NULL row
//	series              $1 (int8): rows 1..$1
//	echo                $1 (text) returned as is
//	big N               N rows of one 64 KiB text value
//	sleep               blocks until its context is cancelled
//	deaf                blocks until its context is cancelled, then succeeds
//	deafprepare         (prepare) blocks until cancelled, then goes on
//	fail                error 22012 with detail, hint and position
//	boom                a plain (internal) error
//	panic               panics
//	set app X           changes application_name
//	begin/commit/rollback/create
func (s *fakeSession) statement(sql string, declared []uint32) (Statement, error) {
	fields := strings.Fields(strings.ToLower(sql))
	if s.types == nil {
		s.types = pgtype.NewMap()
	}
	tag := func(t string) func(context.Context, []Param, RowWriter) (string, error) {
		return func(context.Context, []Param, RowWriter) (string, error) { return t, nil }
	}
	switch {
	case sql == "select 1" || sql == "SELECT 1":
		return &fakeStmt{cols: []Column{{"?column?", pgtype.Int4OID}}, exec: func(_ context.Context, _ []Param, w RowWriter) (string, error) {
			return "SELECT 1", w.WriteRow([]any{int32(1)})
		}}, nil
	case fields[0] == "types":
		return &fakeStmt{cols: typesCols, exec: func(_ context.Context, _ []Param, w RowWriter) (string, error) {
			if err := w.WriteRow(typesRow()); err != nil {
				return "", err
			}
			return "SELECT 2", w.WriteRow(make([]any, len(typesCols)))
		}}, nil
	case fields[0] == "series":
		// "series $1" takes an int8 parameter, "series 5" a literal.
		var literal *int64
		var params []uint32
		if len(fields) > 1 && fields[1] != "$1" {
			n, err := strconv.ParseInt(strings.Trim(fields[1], "()' "), 10, 64)
			if err != nil {
				return nil, Errorf("42601", "bad series literal in %q", sql)
			}
			literal = &n
		} else {
			params = []uint32{pgtype.Int8OID}
		}
		return &fakeStmt{params: params, cols: []Column{{"n", pgtype.Int8OID}},
			exec: func(_ context.Context, params []Param, w RowWriter) (string, error) {
				var n int64
				if literal != nil {
					n = *literal
				} else if err := s.types.Scan(params[0].OID, params[0].Format, params[0].Value, &n); err != nil {
					return "", Errorf("22P02", "invalid input for series: %v", err)
				}
				if s.h.fuzzing {
					n = min(n, 100)
				}
				for i := int64(1); i <= n; i++ {
					if err := w.WriteRow([]any{i}); err != nil {
						return "", err
					}
				}
				return "SELECT " + strconv.FormatInt(n, 10), nil
			}}, nil
	case fields[0] == "echo" && len(fields) == 2 && fields[1] == "null":
		return &fakeStmt{cols: []Column{{"echo", pgtype.TextOID}}, exec: func(_ context.Context, _ []Param, w RowWriter) (string, error) {
			return "SELECT 1", w.WriteRow([]any{nil})
		}}, nil
	case fields[0] == "echo":
		oid := uint32(pgtype.TextOID)
		if len(declared) > 0 && declared[0] != 0 {
			oid = declared[0]
		}
		return &fakeStmt{params: []uint32{oid}, cols: []Column{{"echo", oid}},
			exec: func(_ context.Context, params []Param, w RowWriter) (string, error) {
				var v any
				if params[0].Value != nil {
					var err error
					if v, err = decodeParam(s.types, params[0]); err != nil {
						return "", Errorf("22P02", "invalid input: %v", err)
					}
				}
				return "SELECT 1", w.WriteRow([]any{v})
			}}, nil
	case fields[0] == "big" && len(fields) == 2 && !s.h.fuzzing:
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			return nil, Errorf("42601", "big needs a number")
		}
		value := strings.Repeat("x", 64<<10)
		return &fakeStmt{cols: []Column{{"big", pgtype.TextOID}}, exec: func(ctx context.Context, _ []Param, w RowWriter) (string, error) {
			for range n {
				if err := w.WriteRow([]any{value}); err != nil {
					s.h.ended <- err
					return "", err
				}
			}
			return "SELECT " + strconv.Itoa(n), nil
		}}, nil
	case fields[0] == "sleep" && !s.h.fuzzing:
		return &fakeStmt{cols: []Column{{"slept", pgtype.BoolOID}}, exec: func(ctx context.Context, _ []Param, _ RowWriter) (string, error) {
			s.h.started <- "sleep"
			<-ctx.Done()
			s.h.ended <- context.Cause(ctx)
			return "", fmt.Errorf("sleep interrupted: %w", ctx.Err())
		}}, nil
	case sql == "deadline" && !s.h.fuzzing:
		// Fails unless its context carries the statement timeout's deadline.
		return &fakeStmt{exec: func(ctx context.Context, _ []Param, _ RowWriter) (string, error) {
			if d, ok := ctx.Deadline(); !ok || time.Until(d) <= 0 || time.Until(d) > time.Minute {
				return "", Errorf("XX000", "no statement deadline (%v, %v)", d, ok)
			}
			return "SELECT 0", nil
		}}, nil
	case fields[0] == "deaf" && !s.h.fuzzing:
		// Runs until its context is cancelled, and then succeeds anyway.
		return &fakeStmt{exec: func(ctx context.Context, _ []Param, _ RowWriter) (string, error) {
			s.h.started <- "deaf"
			<-ctx.Done()
			return "SELECT 0", nil
		}}, nil
	case fields[0] == "fail":
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) {
			return "", &Error{Code: "22012", Message: "division by zero", Detail: "the detail", Hint: "the hint", Position: 3}
		}}, nil
	case fields[0] == "boom":
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) {
			return "", errors.New("secret internal detail")
		}}, nil
	case fields[0] == "panic" && !s.h.fuzzing:
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) { panic("fake statement panicked") }}, nil
	case len(fields) == 3 && fields[0] == "set" && fields[1] == "app":
		name := strings.Fields(sql)[2]
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) {
			s.changed = map[string]string{"application_name": name}
			return "SET", nil
		}}, nil
	case fields[0] == "begin":
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) { s.tx = 'T'; return "BEGIN", nil }}, nil
	case fields[0] == "commit", fields[0] == "rollback":
		t := strings.ToUpper(fields[0])
		return &fakeStmt{exec: func(context.Context, []Param, RowWriter) (string, error) {
			if s.tx == 'E' {
				t = "ROLLBACK"
			}
			s.tx = 'I'
			return t, nil
		}}, nil
	case fields[0] == "create":
		return &fakeStmt{exec: tag("CREATE TABLE")}, nil
	default:
		return nil, &Error{Code: "42601", Message: fmt.Sprintf("syntax error at or near %q", fields[0]), Position: 1}
	}
}

func decodeParam(m *pgtype.Map, p Param) (any, error) {
	t, ok := m.TypeForOID(p.OID)
	if !ok {
		return string(p.Value), nil
	}
	return t.Codec.DecodeValue(m, p.OID, p.Format, p.Value)
}
