package pgquery

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/catalog/pgtest"
)

// A cancel that reaches the backend before the query does is ignored by
// PostgreSQL; the handler asks again until the query stops, so the
// query ends with 57014 instead of running until the connection's
// deadline closes it.
func TestCancelBeforeTheQueryArrives(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	pc, err := pgconn.Connect(t.Context(), pgs.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	sent := make(chan struct{}, 1)
	h := &cancelHandler{conn: pc, sent: sent}
	h.HandleCancel(t.Context())
	<-sent // read by the server while the backend was idle: lost
	_, err = pc.Exec(context.Background(), "SELECT pg_sleep(60)").ReadAll()
	h.HandleUnwatchAfterCancel()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("query after a lost cancel: %v; want 57014 (query_canceled) from a later request", err)
	}
}
