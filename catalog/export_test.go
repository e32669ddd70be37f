package catalog

// SetCheckCache turns the decision cache on or off (benchmarks of the cold path).
func (m *Model) SetCheckCache(on bool) { m.cacheOff = !on }

// Queued is how many writes wait for the committer.
func (s *Service) Queued() int { return len(s.queue) }

// ModelOf builds the Model of a snapshot (as a start does).
func ModelOf(st *State) (*Model, error) { return modelOf(st, nil) }

// StatementParams is statementParams (the change audit's request_params).
var StatementParams = statementParams
