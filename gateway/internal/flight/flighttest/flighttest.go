// Package flighttest checks a cache built on gateway/internal/flight
// against the race its Group exists for: a caller that missed the cache
// just as another caller's flight ended.
package flighttest

import (
	"sync/atomic"
	"testing"
)

// Straddle runs late in a goroutine until the code under test calls the
// hook it placed after a cache miss (install puts the hook in place; only
// its first call is held), then runs early to completion and lets late go
// on. It fails t if either returns an error, or if late returns without
// missing the cache. The caller then checks how many requests went
// upstream: one, when late found early's answer in the cache.
func Straddle(t testing.TB, install func(hook func()), late, early func() error) {
	t.Helper()
	missed, resume := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	install(func() {
		if calls.Add(1) == 1 { // the late caller: held after its miss
			close(missed)
			<-resume
		}
	})
	lateErr := make(chan error, 1)
	go func() { lateErr <- late() }()
	select {
	case <-missed:
	case err := <-lateErr:
		t.Fatalf("the late caller returned (%v) without missing the cache", err)
	}
	err := early()
	close(resume)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-lateErr; err != nil {
		t.Fatal(err)
	}
}
