//go:build !linux

// Package nlretry repeats netlink dumps the kernel interrupted; netlink
// is Linux's, so elsewhere Do just calls the dump once.
package nlretry

// Do calls dump once.
func Do[T any](dump func() (T, error)) (T, error) { return dump() }
