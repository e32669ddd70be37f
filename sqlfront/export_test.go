package sqlfront

// RunningQueries returns the number of queries running on the query
// engine.
func (f *Frontend) RunningQueries() int {
	f.adm.mu.Lock()
	defer f.adm.mu.Unlock()
	return len(f.adm.running)
}

// WaitingQueries is the number of queries waiting for an engine slot.
func (f *Frontend) WaitingQueries() int {
	f.adm.mu.Lock()
	defer f.adm.mu.Unlock()
	return f.adm.waiting
}
