package catalog

// SetCheckCache turns the decision cache on or off (benchmarks of the cold path).
func (m *Model) SetCheckCache(on bool) { m.cacheOff = !on }

// Queued is how many writes wait for the committer.
func (s *Service) Queued() int { return len(s.queue) }

// ModelOf builds the Model of a snapshot (as a start does).
func ModelOf(st *State) (*Model, error) { return modelOf(st, nil) }

// StatementParams is statementParams (the change audit's request_params).
var StatementParams = statementParams

// ClosureKnown reports whether principal id's transitive groups are
// computed in s (Warm computes them).
func (s *Snapshot) ClosureKnown(id ID) bool {
	return s.st.cl != nil && int(id) < len(s.st.cl.slots) && s.st.cl.slots[id].Load() != nil
}

// ApplyChange applies a change record as a follower does.
func (m *Model) ApplyChange(c *Change) error { return m.applyChange(c) }

// NextID is the next free ID.
func (m *Model) NextID() ID { return m.nextID }

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

// Kicks is how many wake-ups were sent to the log's writer.
func (l *AuditLog) Kicks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kicks
}

// Lingering reports whether the writer waits on its own timer after a
// write.
func (l *AuditLog) Lingering() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lingering
}

// Filling reports whether the writer waits for more events before it
// writes the oldest batch (MaxDelay, SubmitDelay).
func (l *AuditLog) Filling() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.want > 0
}
