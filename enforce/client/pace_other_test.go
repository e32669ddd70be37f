//go:build !linux

package client_test

import "time"

func pace(n, rate int, send func(due time.Time)) { paceSleeping(n, rate, send) }
