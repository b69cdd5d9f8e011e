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
		{"198.51.100.10", "", true},
		{"8.8.8.8", "", true},
		{"100.63.255.255", "", true},
		{"100.128.0.0", "", true},
		{"127.0.0.1", "", false},
		{"127.8.9.10", "", false},
		{"10.1.2.3", "", false},
		{"172.16.0.1", "", false},
		{"192.168.1.1", "", false},
		{"169.254.169.254", "", false},
		{"100.64.0.1", "", false},
		{"100.127.255.254", "", false},
		{"0.0.0.0", "", false},
		{"0.1.2.3", "", false},
		{"224.0.0.1", "", false},
		{"239.1.2.3", "", false},
		{"255.255.255.255", "", false},
		{"::ffff:10.1.2.3", "", false},
		{"10.1.2.3", "10.0.0.0/8", true},
		{"::ffff:10.1.2.3", "10.0.0.0/8", true},
		{"10.1.2.3", "10.1.2.3/32", true},
		{"10.1.2.4", "10.1.2.3/32", false},
		{"127.0.0.1", "10.0.0.0/8", false},
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
