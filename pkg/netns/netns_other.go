//go:build !linux

// Package netns creates a sandbox's network: a fresh network namespace
// joined to the host by a veth pair. It needs Linux.
package netns

import (
	"errors"
	"net/netip"
)

// ErrNotSupported is returned on systems other than Linux.
var ErrNotSupported = errors.New("network namespaces need Linux")

// Config describes one sandbox network.
type Config struct {
	HostLink                string
	HostAddr                netip.Prefix
	SandboxAddr             netip.Prefix
	HostAddr6, SandboxAddr6 netip.Prefix
	Pin                     string
	Owner                   string
}

// Net is unavailable on this system.
type Net struct{}

// Create reports ErrNotSupported.
func Create(Config) (*Net, error) { return nil, ErrNotSupported }

// Close does nothing.
func (*Net) Close() error { return nil }

// Do reports ErrNotSupported.
func (*Net) Do(func() error) error { return ErrNotSupported }

// Open reports ErrNotSupported.
func Open(Config) (*Net, error) { return nil, ErrNotSupported }

// Remove reports ErrNotSupported.
func Remove(Config) error { return ErrNotSupported }

// Path returns "".
func (*Net) Path() string { return "" }

// HostIndex reports ErrNotSupported.
func (*Net) HostIndex() (int, error) { return 0, ErrNotSupported }
