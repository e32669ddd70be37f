package node

import (
	"crypto/sha256"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// SetAfterMiss makes f run between a cache miss of c.Connection and the
// request it joins or starts.
func SetAfterMiss(c *Connections, f func()) { c.cache.afterMiss = f }

// SetServicesAfterMiss makes f run between a cache miss of
// s.ModelService and the request it joins or starts.
func SetServicesAfterMiss(s *ModelServices, f func()) { s.cache.afterMiss = f }

// SetLocalAccessTokens sets l's clock and the bound of its cache (over
// svc, emptied).
func SetLocalAccessTokens(l *LocalAccessTokens, svc *catalog.Service, now func() time.Time, size int) {
	l.now, l.cache = now, catalog.NewRevisionCache[[sha256.Size]byte, *tokenAnswer](svc, size)
}

// LocalAccessTokensCached is the number of answers l's cache holds.
func LocalAccessTokensCached(l *LocalAccessTokens) int { return l.cache.Len() }

// AccessTokensCached is the number of answers a's cache holds, invalid
// ones included.
func AccessTokensCached(a *AccessTokens) int { return a.cache.len() }
