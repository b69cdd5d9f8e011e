//go:build !linux

package tproxy

import (
	"net"
	"net/netip"
)

// RulePriority is the priority of the policy routing rule Install adds.
const RulePriority = 1000

// Install reports ErrNotSupported.
func Install(mark, table uint32) (undo func() error, err error) { return nil, ErrNotSupported }

// ListenTCP reports ErrNotSupported.
func ListenTCP(netip.AddrPort) (*net.TCPListener, error) { return nil, ErrNotSupported }

// ListenUDP reports ErrNotSupported.
func ListenUDP(netip.AddrPort) (*net.UDPConn, error) { return nil, ErrNotSupported }
