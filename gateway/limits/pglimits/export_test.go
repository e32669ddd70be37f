package pglimits

// Kill stops b like a crash: the background work ends and nothing is given
// back.
func (b *Backend) Kill() { b.kill() }
