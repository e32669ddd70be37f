//go:build !linux

package lowprio

func setNice(int) error { return nil }

func getNice() (int, error) { return 0, nil }
