package hostagent

import (
	"net/netip"
	"testing"
)

func TestAddrPool(t *testing.T) {
	p := newAddrPool(netip.MustParsePrefix("10.233.0.0/28")) // 4 blocks, 3 leasable
	if got := p.service(); got.String() != "10.233.0.1" {
		t.Fatalf("service = %s", got)
	}
	seen := map[int]bool{}
	for range 3 {
		i, err := p.lease()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 || seen[i] {
			t.Fatalf("leased block %d twice or block 0", i)
		}
		seen[i] = true
	}
	if _, err := p.lease(); err != errPoolExhausted {
		t.Fatalf("4th lease: err = %v, want errPoolExhausted", err)
	}
	p.release(2)
	i, err := p.lease()
	if err != nil || i != 2 {
		t.Fatalf("lease after release = %d, %v; want 2", i, err)
	}
	if h, s := p.host(2), p.sandbox(2); h.String() != "10.233.0.9/30" || s.String() != "10.233.0.10/30" {
		t.Fatalf("block 2 = %s, %s", h, s)
	}
}

func TestAddrPoolIPv6(t *testing.T) {
	p := newAddrPool(netip.MustParsePrefix("10.233.0.0/16")).withIPv6(netip.MustParsePrefix("fd6b:6761:7465::/48"))
	if got := p.service6().String(); got != "fd6b:6761:7465::1" {
		t.Fatalf("service6 = %s", got)
	}
	if h, s := p.host6(258).String(), p.sandbox6(258).String(); h != "fd6b:6761:7465:102::1/64" || s != "fd6b:6761:7465:102::2/64" {
		t.Fatalf("block 258 = %s, %s", h, s)
	}
	if err := p.leaseBlock(5); err != nil {
		t.Fatal(err)
	}
	if err := p.leaseBlock(5); err == nil {
		t.Fatal("leased block 5 twice")
	}
	if err := p.leaseBlock(0); err == nil {
		t.Fatal("leased the service block")
	}
	v4only := newAddrPool(netip.MustParsePrefix("10.233.0.0/24"))
	if v4only.service6().IsValid() || v4only.host6(1).IsValid() {
		t.Fatal("a pool without IPv6 returned IPv6 addresses")
	}
}
