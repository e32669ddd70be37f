package client_test

import "time"

// paceSleeping is pace with Go's timers (1 ms resolution on an idle Linux
// process): the due times are exact, the sends late by up to about 1 ms.
func paceSleeping(n, rate int, send func(due time.Time)) {
	start := time.Now()
	for i := range n {
		t := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
		if w := time.Until(t); w > 0 {
			time.Sleep(w)
		}
		send(t)
	}
}
