//go:build linux

package bpf

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestAddrWords(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"198.51.100.7", "198.51.100.7"},
		{"::ffff:198.51.100.7", "198.51.100.7"}, // v4-mapped comes back plain
		{"2001:db8::7", "2001:db8::7"},
		{"fe80::1%eth0", "fe80::1"}, // zones are dropped
	} {
		in := netip.MustParseAddr(tc.in)
		if got := addrFromWords(ip6Words(in)); got != netip.MustParseAddr(tc.out) {
			t.Errorf("round trip of %s = %s, want %s", tc.in, got, tc.out)
		}
	}

	// The kernel's layout: network byte order in each word, read in host
	// order, and IPv4 stored v4-mapped.
	w := ip6Words(netip.MustParseAddr("198.51.100.7"))
	if w[0] != 0 || w[1] != 0 || w[2] != binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff}) {
		t.Errorf("IPv4 is not v4-mapped: %08x", w)
	}
	if w[3] != ip4Word(netip.MustParseAddr("198.51.100.7")) {
		t.Errorf("word 3 = %08x, want the IPv4 address", w[3])
	}
}
