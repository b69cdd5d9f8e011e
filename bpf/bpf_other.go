//go:build !linux

package bpf

import (
	"errors"
	"net/netip"
)

// ErrNotSupported is returned on systems without eBPF.
var ErrNotSupported = errors.New("ebpf capture needs Linux")

// CgroupConfig says where the cgroup programs send captured traffic.
type CgroupConfig struct {
	Proxy    netip.AddrPort
	Resolver netip.AddrPort
}

// CgroupCapture is unavailable on this system.
type CgroupCapture struct{}

// OrigDst is where a captured connection was going before it was redirected.
type OrigDst struct {
	Dst      netip.AddrPort
	CgroupID uint64
}

// LoadCgroup reports ErrNotSupported.
func LoadCgroup(CgroupConfig) (*CgroupCapture, error) { return nil, ErrNotSupported }

// Attach reports ErrNotSupported.
func (*CgroupCapture) Attach(string) error { return ErrNotSupported }

// TakeConn reports ErrNotSupported.
func (*CgroupCapture) TakeConn(netip.AddrPort) (OrigDst, error) { return OrigDst{}, ErrNotSupported }

// Counters reports ErrNotSupported.
func (*CgroupCapture) Counters() (map[string]uint64, error) { return nil, ErrNotSupported }

// Close does nothing.
func (*CgroupCapture) Close() error { return nil }

// CgroupID reports ErrNotSupported.
func CgroupID(string) (uint64, error) { return 0, ErrNotSupported }
