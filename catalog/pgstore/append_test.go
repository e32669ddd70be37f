package pgstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/catalog"
)

// An append that could not reach the database says that nothing was
// applied; one whose connection broke after it was sent may have been.
func TestAppendResultUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // a failure bound
	defer cancel()
	// A port nothing listens on.
	_, dialErr := pgconn.Connect(ctx, "postgres://mandate@127.0.0.1:1/mandate?sslmode=disable&connect_timeout=5")
	var ce *pgconn.ConnectError
	if !errors.As(dialErr, &ce) {
		t.Fatalf("connect to a closed port: %v (%T), want a *pgconn.ConnectError", dialErr, dialErr)
	}
	for _, tc := range []struct {
		name      string
		err       error
		want, not string
	}{
		{"unreachable", dialErr, "the change was not applied", "may or may not"},
		{"pool acquire", errors.Join(errors.New("acquire"), dialErr), "the change was not applied", "may or may not"},
		{"lost after send", errors.New("unexpected EOF"), "may or may not have been applied", "was not applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := appendResult(t.Context(), false, nil, tc.err)
			if !catalog.IsCode(err, catalog.CodeUnavailable) {
				t.Fatalf("appendResult: %v, want CodeUnavailable", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
				t.Fatalf("appendResult: %q, want %q and not %q", msg, tc.want, tc.not)
			}
		})
	}
}
