package catalog

// FoldCompletions applies the completions among events (Completes set) to
// the requests they complete that are among events too, and returns the
// remaining rows in order, and the completions whose request is not among
// them (to be applied to stored rows), in order. A completion applies to
// every earlier or later request with its EventID in events. events is
// not modified.
func FoldCompletions(events []AuditEvent) (rows, late []AuditEvent) {
	found := false
	for i := range events {
		if events[i].Completes {
			found = true
			break
		}
	}
	if !found {
		return events, nil
	}
	rows = make([]AuditEvent, 0, len(events))
	at := make(map[string][]int)
	for i := range events {
		if !events[i].Completes {
			at[events[i].EventID] = append(at[events[i].EventID], len(rows))
			rows = append(rows, events[i])
		}
	}
	for i := range events {
		c := &events[i]
		if !c.Completes {
			continue
		}
		is, ok := at[c.EventID]
		if !ok {
			late = append(late, *c)
			continue
		}
		for _, j := range is {
			rows[j].CompleteWith(c)
		}
	}
	return rows, late
}
