package sqlfront

// RunningQueries returns the number of queries running on the query
// engine.
func (f *Frontend) RunningQueries() int {
	f.adm.mu.Lock()
	defer f.adm.mu.Unlock()
	return len(f.adm.running)
}
