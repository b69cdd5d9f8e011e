package resolver

import (
	"net/netip"
	"testing"
)

func TestPermitted(t *testing.T) {
	tests := []struct {
		addr  string
		allow string // AllowPrivate prefix, or ""
		want  bool
	}{
		// Public IPv4, including the edges of internal ranges.
		{"198.51.100.10", "", true},
		{"8.8.8.8", "", true},
		{"1.1.1.1", "", true},
		{"100.63.255.255", "", true},
		{"100.128.0.0", "", true},
		{"192.0.1.255", "", true},
		{"192.0.2.1", "", true}, // documentation: reaches nothing internal
		{"198.17.255.255", "", true},
		{"198.20.0.0", "", true},
		{"223.255.255.255", "", true},

		// Internal IPv4.
		{"127.0.0.1", "", false},
		{"127.8.9.10", "", false},
		{"10.1.2.3", "", false},
		{"172.16.0.1", "", false},
		{"172.31.255.255", "", false},
		{"192.168.1.1", "", false},
		{"169.254.169.254", "", false},
		{"100.64.0.1", "", false},
		{"100.127.255.254", "", false},
		{"0.0.0.0", "", false},
		{"0.1.2.3", "", false},
		{"192.0.0.8", "", false},
		{"192.88.99.1", "", false},
		{"198.18.0.1", "", false},
		{"198.19.255.255", "", false},
		{"224.0.0.1", "", false},
		{"239.1.2.3", "", false},
		{"240.0.0.1", "", false},
		{"255.255.255.255", "", false},

		// Public IPv6.
		{"2606:4700::1111", "", true},
		{"2a00:1450:4001:800::200e", "", true},
		{"2001:db8::1", "", true},          // documentation
		{"64:ff9b::c633:640a", "", true},   // NAT64 of 198.51.100.10
		{"2002:c633:640a::1", "", true},    // 6to4 of 198.51.100.10
		{"::ffff:198.51.100.10", "", true}, // v4-mapped public

		// Internal IPv6.
		{"::1", "", false},
		{"::", "", false},
		{"::a00:1", "", false}, // IPv4-compatible
		{"fe80::1", "", false},
		{"febf::1", "", false},
		{"fc00::1", "", false},
		{"fd12:3456::1", "", false},
		{"fec0::1", "", false},
		{"ff02::1", "", false},
		{"ff0e::1", "", false},
		{"::ffff:10.1.2.3", "", false},
		{"::ffff:127.0.0.1", "", false},
		{"::ffff:169.254.169.254", "", false},
		{"64:ff9b::a01:203", "", false},   // NAT64 of 10.1.2.3
		{"64:ff9b::a9fe:a9fe", "", false}, // NAT64 of 169.254.169.254
		{"64:ff9b:1::1", "", false},
		{"2002:a01:203::1", "", false}, // 6to4 of 10.1.2.3
		{"2002:7f00:1::1", "", false},  // 6to4 of 127.0.0.1
		{"100::1", "", false},
		{"2001::1", "", false},   // Teredo
		{"2001:2::1", "", false}, // benchmarking
		{"2001:20::1", "", false},
		{"5f00::1", "", false},

		// AllowPrivate exceptions.
		{"10.1.2.3", "10.0.0.0/8", true},
		{"::ffff:10.1.2.3", "10.0.0.0/8", true},
		{"10.1.2.3", "10.1.2.3/32", true},
		{"10.1.2.4", "10.1.2.3/32", false},
		{"127.0.0.1", "10.0.0.0/8", false},
		{"fd00::5", "fd00::/8", true},
		{"fd01::5", "fd00::/16", false},
		{"198.18.0.1", "198.18.0.0/15", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/"+tt.allow, func(t *testing.T) {
			r := &Resolver{}
			if tt.allow != "" {
				r.allowPrivate = []netip.Prefix{netip.MustParsePrefix(tt.allow)}
			}
			if got := r.permitted(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("permitted(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}
