package ca

import (
	"errors"
	"testing"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		wantKey string // empty: the host must be refused
		wantIP  bool
	}{
		{"dns name", "api.example.com", "api.example.com", false},
		{"case and trailing dot", "API.Example.COM.", "api.example.com", false},
		{"underscore label", "_srv.example.com", "_srv.example.com", false},
		{"ipv4", "192.0.2.7", "192.0.2.7", true},
		{"ipv6", "2001:DB8::1", "2001:db8::1", true},
		{"ipv4-mapped ipv6", "::ffff:192.0.2.7", "192.0.2.7", true},
		{"empty", "", "", false},
		{"only a dot", ".", "", false},
		{"wildcard", "*.example.com", "", false},
		{"bare wildcard", "*", "", false},
		{"space", "api example.com", "", false},
		{"tab", "api.example.com\t", "", false},
		{"two trailing dots", "example.com..", "", false},
		{"empty label", "api..example.com", "", false},
		{"bracketed ipv6", "[::1]", "", false},
		{"ipv6 zone", "fe80::1%eth0", "", false},
		{"host and port", "example.com:443", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseHost(tt.host)
			if tt.wantKey == "" {
				if !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("parseHost(%q) = %+v, %v; want ErrInvalidHost", tt.host, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseHost(%q): %v", tt.host, err)
			}
			if got.key != tt.wantKey || (got.ip != nil) != tt.wantIP {
				t.Errorf("parseHost(%q) = %+v, want key %q ip=%v", tt.host, got, tt.wantKey, tt.wantIP)
			}
		})
	}
}
