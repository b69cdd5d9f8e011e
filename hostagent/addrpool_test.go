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
