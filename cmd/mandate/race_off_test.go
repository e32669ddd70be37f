//go:build !race

package main

// raceDetector: the race detector is off (race_on_test.go).
const raceDetector = false
