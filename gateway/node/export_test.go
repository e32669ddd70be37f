package node

// SetAfterMiss makes f run between a cache miss of c.Connection and the
// request it joins or starts.
func SetAfterMiss(c *Connections, f func()) { c.afterMiss = f }
