//go:build !linux

package hostagent

import "errors"

// ErrNotSupported is returned by Start on systems other than Linux.
var ErrNotSupported = errors.New("keygated needs Linux (eBPF, network namespaces, cgroup v2)")

// Agent is unavailable on this system.
type Agent struct{}

// Start reports ErrNotSupported.
func Start(Config) (*Agent, error) { return nil, ErrNotSupported }

// Close does nothing.
func (*Agent) Close() error { return nil }
