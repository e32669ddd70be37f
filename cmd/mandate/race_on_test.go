//go:build race

package main

// raceDetector: the race detector is on; sync.Pool then drops some of what
// is put back, so allocation counts are not checked.
const raceDetector = true
