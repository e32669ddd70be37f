package sqlfront

// RunningQueries returns the number of queries executing on the query
// engine. A query's description (while it is prepared) takes a slot of
// its own for a moment before its execution takes one again; it is not
// counted, so that a test waiting for n running queries waits until they
// hold their slots for good.
func (f *Frontend) RunningQueries() int {
	f.adm.mu.Lock()
	defer f.adm.mu.Unlock()
	n := 0
	for q := range f.adm.running {
		if q.execute {
			n++
		}
	}
	return n
}

// WaitingQueries is the number of queries waiting for an engine slot.
func (f *Frontend) WaitingQueries() int {
	f.adm.mu.Lock()
	defer f.adm.mu.Unlock()
	return f.adm.waiting
}
