package catalog

// SetCheckCache turns the decision cache on or off (benchmarks of the cold path).
func (m *Model) SetCheckCache(on bool) { m.cacheOff = !on }

// Queued is how many writes wait for the committer.
func (s *Service) Queued() int { return len(s.queue) }
