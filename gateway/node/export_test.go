package node

// SetAfterMiss makes f run between a cache miss of c.Connection and the
// request it joins or starts.
func SetAfterMiss(c *Connections, f func()) { c.cache.afterMiss = f }

// SetServicesAfterMiss makes f run between a cache miss of
// s.ModelService and the request it joins or starts.
func SetServicesAfterMiss(s *ModelServices, f func()) { s.cache.afterMiss = f }
