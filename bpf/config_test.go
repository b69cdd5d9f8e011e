package bpf

import (
	"net/netip"
	"testing"
)

func TestCgroupConfigValidate(t *testing.T) {
	ap := netip.MustParseAddrPort
	v4 := CgroupConfig{Proxy: ap("10.239.0.1:15001"), Resolver: ap("10.239.0.1:15053")}
	dual := v4
	dual.Proxy6, dual.Resolver6 = ap("[fd6b:6761:7499::1]:15001"), ap("[fd6b:6761:7499::1]:15053")

	for _, tc := range []struct {
		name string
		cfg  CgroupConfig
		ok   bool
	}{
		{"IPv4 only", v4, true},
		{"dual stack", dual, true},
		{"no proxy", CgroupConfig{Resolver: v4.Resolver}, false},
		{"IPv6 proxy as IPv4", CgroupConfig{Proxy: dual.Proxy6, Resolver: v4.Resolver}, false},
		{"v4-mapped proxy", CgroupConfig{Proxy: ap("[::ffff:10.239.0.1]:1"), Resolver: v4.Resolver},
			false},
		{"no port", CgroupConfig{Proxy: ap("10.239.0.1:0"), Resolver: v4.Resolver}, false},
		{"unspecified", CgroupConfig{Proxy: ap("0.0.0.0:1"), Resolver: v4.Resolver}, false},
		{"Proxy6 alone", CgroupConfig{Proxy: v4.Proxy, Resolver: v4.Resolver, Proxy6: dual.Proxy6},
			false},
		{"v4-mapped Proxy6", func() CgroupConfig {
			c := dual
			c.Proxy6 = ap("[::ffff:10.239.0.1]:15001")
			return c
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.validate(); (err == nil) != tc.ok {
				t.Errorf("validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestGuardValidate(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"v4 service", GuardConfig{Service4: a("10.239.0.1")}.validate()},
		{"v6 service", GuardConfig{Service6: a("fd6b:6761:7499::1")}.validate()},
		{"veth", GuardVeth{Sandbox4: a("10.239.1.2"), Host6: a("fd6b:6761:7499:1::1")}.validate()},
		{"empty veth", GuardVeth{}.validate()},
		{"tc veth", GuardVeth{Sandbox6: a("fd6b:6761:7499:1::2"), Mode: CaptureTC}.validate()},
	} {
		if tc.err != nil {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"no service", GuardConfig{}.validate()},
		{"swapped services", GuardConfig{Service4: a("fd6b:6761:7499::1")}.validate()},
		{"v4-mapped service", GuardConfig{Service6: a("::ffff:10.239.0.1")}.validate()},
		{"IPv6 sandbox as IPv4", GuardVeth{Sandbox4: a("fd6b:6761:7499:1::2")}.validate()},
		{"v4-mapped sandbox", GuardVeth{Sandbox6: a("::ffff:10.239.1.2")}.validate()},
		{"tc veth without a sandbox address", GuardVeth{Host4: a("10.239.1.1"),
			Mode: CaptureTC}.validate()},
		{"unknown mode", GuardVeth{Sandbox4: a("10.239.1.2"), Mode: 7}.validate()},
	} {
		if tc.err == nil {
			t.Errorf("%s: validated", tc.name)
		}
	}
}
