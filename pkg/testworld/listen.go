package testworld

import (
	"fmt"
	"net"
)

// Listen opens a listener inside the world's network namespace, for a
// server the caller runs itself: network and address are as for net.Listen,
// and address must be one the world holds (API, Other, Attacker or DNS, or
// their IPv6 twins) or a wildcard. The listener keeps belonging to the world
// whichever goroutine serves it. Nothing it receives is recorded, so it
// suits load tests that would swamp the recording servers.
//
// The caller closes the listener; it must do so before Close, which removes
// the namespace.
func (w *World) Listen(network, address string) (net.Listener, error) {
	if w.net == nil {
		return nil, ErrNotSupported
	}
	var ln net.Listener
	err := w.net.do(func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in world %s: %w", network, address, w.Name, err)
	}
	return ln, nil
}
