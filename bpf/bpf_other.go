//go:build !linux

package bpf

import "net/netip"

// CgroupCapture is unavailable on this system.
type CgroupCapture struct{}

// LoadCgroup reports ErrNotSupported.
func LoadCgroup(CgroupConfig) (*CgroupCapture, error) { return nil, ErrNotSupported }

// Attach reports ErrNotSupported.
func (*CgroupCapture) Attach(string) error { return ErrNotSupported }

// TakeConn reports ErrNotSupported.
func (*CgroupCapture) TakeConn(netip.AddrPort) (OrigDst, error) {
	return OrigDst{}, ErrNotSupported
}

// Counters reports ErrNotSupported.
func (*CgroupCapture) Counters() (map[string]uint64, error) { return nil, ErrNotSupported }

// DenyEvents reports ErrNotSupported.
func (*CgroupCapture) DenyEvents() (*EventReader, error) { return nil, ErrNotSupported }

// Unpin reports ErrNotSupported.
func (*CgroupCapture) Unpin() error { return ErrNotSupported }

// Close does nothing.
func (*CgroupCapture) Close() error { return nil }

// CgroupID reports ErrNotSupported.
func CgroupID(string) (uint64, error) { return 0, ErrNotSupported }

// Guard is unavailable on this system.
type Guard struct{}

// LoadGuard reports ErrNotSupported.
func LoadGuard(GuardConfig) (*Guard, error) { return nil, ErrNotSupported }

// Attach reports ErrNotSupported.
func (*Guard) Attach(int, GuardVeth) error { return ErrNotSupported }

// Detach reports ErrNotSupported.
func (*Guard) Detach(int) error { return ErrNotSupported }

// Counters reports ErrNotSupported.
func (*Guard) Counters() (map[string]uint64, error) { return nil, ErrNotSupported }

// SetSteerSockets reports ErrNotSupported.
func (*Guard) SetSteerSockets(SteerSockets) error { return ErrNotSupported }

// SteerCounters reports ErrNotSupported.
func (*Guard) SteerCounters() (map[string]uint64, error) { return nil, ErrNotSupported }

// DenyEvents reports ErrNotSupported.
func (*Guard) DenyEvents() (*EventReader, error) { return nil, ErrNotSupported }

// Unpin reports ErrNotSupported.
func (*Guard) Unpin() error { return ErrNotSupported }

// Close does nothing.
func (*Guard) Close() error { return nil }

// EventReader is unavailable on this system.
type EventReader struct{}

// Read reports ErrNotSupported.
func (*EventReader) Read() (DenyEvent, error) { return DenyEvent{}, ErrNotSupported }

// Close does nothing.
func (*EventReader) Close() error { return nil }
