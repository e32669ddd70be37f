package pgquery

import "github.com/jackc/pgx/v5/pgxpool"

// Pool is the engine's pool, for tests that try what a statement that got
// past the front end could do on its connection.
func (e *Engine) Pool() *pgxpool.Pool { return e.pool }
