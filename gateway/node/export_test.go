package node

import "time"

// SetAfterMiss makes f run between a cache miss of c.Connection and the
// request it joins or starts.
func SetAfterMiss(c *Connections, f func()) { c.cache.afterMiss = f }

// SetServicesAfterMiss makes f run between a cache miss of
// s.ModelService and the request it joins or starts.
func SetServicesAfterMiss(s *ModelServices, f func()) { s.cache.afterMiss = f }

// SetLocalAccessTokens sets l's clock and the bound of its cache.
func SetLocalAccessTokens(l *LocalAccessTokens, now func() time.Time, size int) {
	l.now, l.size = now, size
}

// LocalAccessTokensCached is the number of answers l's cache holds.
func LocalAccessTokensCached(l *LocalAccessTokens) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cache)
}
