package testworld

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Name) != 7 || !strings.HasPrefix(cfg.Name, "kgw") {
		t.Errorf("default name %q, want kgw + 4 hex digits", cfg.Name)
	}
	if cfg.Prefix != DefaultPrefix || cfg.Prefix6 != DefaultPrefix6 || cfg.Zone != DefaultZone {
		t.Errorf("defaults: prefix %s prefix6 %s zone %q", cfg.Prefix, cfg.Prefix6, cfg.Zone)
	}

	cfg, err = Config{NoIPv6: true}.withDefaults()
	if err != nil || cfg.Prefix6.IsValid() {
		t.Errorf("NoIPv6: prefix6 %s (%v), want none", cfg.Prefix6, err)
	}
}

func TestConfigInvalid(t *testing.T) {
	v4 := netip.MustParsePrefix("10.1.0.0/24")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"long name", Config{Name: "toolongname"}},
		{"name with slash", Config{Name: "a/b"}},
		{"upper case name", Config{Name: "KGW"}},
		{"ipv6 prefix", Config{Name: "kgw", Prefix: netip.MustParsePrefix("fd00::/64")}},
		{"prefix too narrow", Config{Name: "kgw", Prefix: netip.MustParsePrefix("10.1.0.0/26")}},
		{"ipv4 prefix6", Config{Name: "kgw", Prefix: v4, Prefix6: v4}},
		{"mapped prefix6", Config{Name: "kgw", Prefix6: netip.MustParsePrefix("::ffff:10.1.0.0/120")}},
		{"prefix6 too narrow", Config{Name: "kgw", Prefix6: netip.MustParsePrefix("fd00::/124")}},
		{"link-local prefix6", Config{Name: "kgw", Prefix6: netip.MustParsePrefix("fe80::/64")}},
		{"prefix6 without ipv6", Config{Name: "kgw", NoIPv6: true, Prefix6: DefaultPrefix6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Start(tt.cfg); err == nil {
				t.Fatal("Start accepted an invalid config")
			}
		})
	}
}

func TestAddrAt6(t *testing.T) {
	base := netip.MustParseAddr("fd6b:6777:0:1::")
	for offset, want := range map[int]string{
		hostOffset:     "fd6b:6777:0:1::1",
		apiOffset:      "fd6b:6777:0:1::10",
		dnsOffset:      "fd6b:6777:0:1::53",
		attackerOffset: "fd6b:6777:0:1::66",
	} {
		if got := addrAt6(base, offset); got.String() != want {
			t.Errorf("addrAt6(%s, %d) = %s, want %s", base, offset, got, want)
		}
	}
}
