//go:build linux

// Package nlretry repeats netlink dumps the kernel interrupted. A dump
// (links, addresses, routes, rules) that races a change elsewhere on the
// host comes back flagged as possibly inconsistent; vishvananda/netlink
// reports that as ErrDumpInterrupted along with the partial result. On a
// busy host — sandboxes coming and going — that is common, and the answer
// is to ask again.
package nlretry

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// attempts bounds the retries; a dump interrupted this often in a row
// means the host is changing faster than it can be read.
const attempts = 8

// Do calls dump until it returns a result the kernel did not flag as
// interrupted, or attempts run out (then the last error is returned).
func Do[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range attempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
