package nodelimits

import "time"

// Expire moves the last contact with the server d into the past (tests).
func (b *Backend) Expire(d time.Duration) { b.lastContact.Add(-int64(d)) }
