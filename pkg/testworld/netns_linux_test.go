package testworld

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/keygate/keygate/internal/testutil"
)

func TestStartRemovesStale(t *testing.T) {
	testutil.RequireRoot(t)
	const name = "kgwt3"

	// Clean up after this test even if it fails before Start takes over.
	leftovers := &network{name: name, hostLink: name + "h"}
	if err := leftovers.removeStale(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leftovers.removeStale() })

	// Leave what a crashed run would: a named namespace holding one end of
	// a veth pair, and the other end, without addresses, on the host.
	ns, err := newNamedNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	stale := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name + "h"},
		PeerName:      name + "w",
		PeerNamespace: netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(stale); err != nil {
		t.Fatal(err)
	}

	w := startWorld(t, Config{Name: name, Prefix: netip.MustParsePrefix("10.251.3.0/24")})
	link, err := netlink.LinkByName(name + "h")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(net.IP(w.HostIP.AsSlice())) {
		t.Errorf("host link addresses %v (%v), want only %s", addrs, err, w.HostIP)
	}

	resp, err := worldClient(t, w, w.Other, true).Get("https://" + w.OtherHost() + "/")
	if err != nil {
		t.Fatalf("request to fresh world: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
