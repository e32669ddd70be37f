package pipeline

// InFlightSubjects is the number of subjects with calls in progress.
func InFlightSubjects(p *Pipeline) int { return p.inFlight.len() }
