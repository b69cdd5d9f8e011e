//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
)

// ip4Word returns addr's four bytes as the kernel stores them in a __u32
// field: network byte order, read in host order. addr may be v4-mapped.
func ip4Word(addr netip.Addr) uint32 {
	b := addr.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

// ip6Words returns addr's 16 bytes, an IPv4 address v4-mapped, as the
// four __u32 words the kernel stores IPv6 addresses in. A zone is dropped.
func ip6Words(addr netip.Addr) [4]uint32 {
	b := addr.WithZone("").As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

// addrFromWords is the inverse of ip6Words: a v4-mapped address comes back
// as plain IPv4.
func addrFromWords(w [4]uint32) netip.Addr {
	var b [16]byte
	for i, x := range w {
		binary.NativeEndian.PutUint32(b[4*i:], x)
	}
	return netip.AddrFrom16(b).Unmap()
}
