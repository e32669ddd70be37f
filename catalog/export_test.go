package catalog

// SetCheckCache turns the decision cache on or off (benchmarks of the cold path).
func (m *Model) SetCheckCache(on bool) { m.cacheOff = !on }

// Queued is how many writes wait for the committer.
func (s *Service) Queued() int { return len(s.queue) }

// ModelOf builds the Model of a snapshot (as a start does).
func ModelOf(st *State) (*Model, error) { return modelOf(st, nil) }

// StatementParams is statementParams (the change audit's request_params).
var StatementParams = statementParams

// Pending is the number of events the log holds: queued, or in the write
// in progress.
func (l *AuditLog) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, b := range l.queue {
		n += len(b.events)
	}
	if l.writing != nil {
		n += len(l.writing.events)
	}
	return n
}
