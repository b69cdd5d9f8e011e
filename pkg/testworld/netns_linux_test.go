package testworld

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

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

	cfg := testConfig(name, 3)
	cfg.NoStandIns = true
	w := startWorld(t, cfg)
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

func TestCloseRemovesEverything(t *testing.T) {
	w := startWorld(t, testConfig("kgwt2", 2))
	caDir := filepath.Dir(w.CAFile)
	link, err := netlink.LinkByName(w.Name + "h")
	if err != nil {
		t.Fatal(err)
	}
	index := link.Attrs().Index
	standIns := []netip.Addr{w.Metadata, w.StrayDNS}
	for _, a := range standIns {
		if n := len(routesVia(t, a, index)); n != 1 {
			t.Fatalf("before Close: %d host routes to %s via %sh, want 1", n, a, w.Name)
		}
	}
	if !hostHasAddr(t, w.HostIP6) {
		t.Fatalf("before Close: host lacks %s", w.HostIP6)
	}

	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	if ns, err := netns.GetFromName(w.Name); err == nil {
		ns.Close()
		t.Errorf("namespace %s still exists", w.Name)
	}
	_, err = netlink.LinkByName(w.Name + "h")
	if !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("host link %sh: got %v, want not found", w.Name, err)
	}
	if _, err := os.Stat(caDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CA dir %s: got %v, want removed", caDir, err)
	}
	for _, a := range append(standIns, w.API, w.API6) {
		if routes := routesVia(t, a, index); len(routes) != 0 {
			t.Errorf("host routes to %s still use the world link: %v", a, routes)
		}
		got, err := netlink.RouteGet(net.IP(a.AsSlice()))
		if err == nil && len(got) > 0 && got[0].LinkIndex == index {
			t.Errorf("host still sends %s through the world link", a)
		}
	}
	for _, a := range []netip.Addr{w.HostIP, w.HostIP6} {
		if hostHasAddr(t, a) {
			t.Errorf("host still has %s", a)
		}
	}
}

// routesVia returns the host's main-table routes for exactly a through the
// link with index.
func routesVia(t *testing.T, a netip.Addr, index int) []netlink.Route {
	t.Helper()
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == netip.PrefixFrom(a, a.BitLen()).String() &&
			r.LinkIndex == index {
			out = append(out, r)
		}
	}
	return out
}

func hostHasAddr(t *testing.T, a netip.Addr) bool {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range addrs {
		if ip, ok := netip.AddrFromSlice(got.IP); ok && ip.Unmap() == a {
			return true
		}
	}
	return false
}

func TestSequentialWorldsSameName(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testConfig("kgwt6", 6)
	for i := range 2 {
		w, err := Start(cfg)
		if err != nil {
			t.Fatalf("world %d: Start: %v", i, err)
		}
		metadataGet(t, w)
		resp, err := worldClient(t, w, w.API6, true).Get("https://" + w.API6Host() + "/")
		if err == nil {
			resp.Body.Close()
		}
		if err != nil || len(w.Requests(w.API6Host())) != 1 {
			t.Errorf("world %d: api6 request: %v, %d recorded", i, err, len(w.Requests(w.API6Host())))
		}
		if err := w.Close(); err != nil {
			t.Fatalf("world %d: Close: %v", i, err)
		}
	}
}

// metadataGet makes a request to w's metadata server and checks it was
// recorded.
func metadataGet(t *testing.T, w *World) {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	before := len(w.Requests("metadata"))
	resp, err := client.Get("http://" + w.MetadataHost() + "/")
	if err != nil {
		t.Fatalf("world %s: metadata request: %v", w.Name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n := len(w.Requests("metadata")); n != before+1 {
		t.Errorf("world %s: metadata recorded %d requests, want %d", w.Name, n, before+1)
	}
}

func TestStartRejectsUsedAddresses(t *testing.T) {
	first := startWorld(t, testConfig("kgwt4", 4))
	v4, v6 := testPrefixes(4)
	free4, free6 := testPrefixes(5)

	tests := []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"ipv4 prefix", Config{Prefix: v4, Prefix6: free6, NoStandIns: true}, "overlaps"},
		{"ipv6 prefix", Config{Prefix: free4, Prefix6: v6, NoStandIns: true}, "overlaps"},
		{"stand-in routes", Config{Prefix: free4, Prefix6: free6}, "already routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Name = "kgwt5"
			w, err := Start(tt.cfg)
			if err == nil {
				w.Close()
				t.Fatal("second world started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to say %q", err, tt.want)
			}
			if ns, err := netns.GetFromName("kgwt5"); err == nil {
				ns.Close()
				t.Error("failed Start left its namespace behind")
			}
		})
	}

	// The failed worlds must not have taken the first world's routes.
	metadataGet(t, first)
}

func TestWorldNetwork(t *testing.T) {
	w := startWorld(t, testConfig("kgwt7", 7))

	t.Run("no forwarding", func(t *testing.T) {
		for _, path := range []string{
			"/proc/sys/net/ipv4/ip_forward",
			"/proc/sys/net/ipv6/conf/all/forwarding",
		} {
			var got []byte
			err := w.net.do(func() (err error) {
				got, err = os.ReadFile(path)
				return err
			})
			if err != nil || strings.TrimSpace(string(got)) != "0" {
				t.Errorf("world %s = %q (%v), want 0", path, got, err)
			}
		}
	})

	t.Run("default routes", func(t *testing.T) {
		h, err := netlink.NewHandleAt(w.net.ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		for family, gw := range map[int]netip.Addr{
			netlink.FAMILY_V4: w.HostIP,
			netlink.FAMILY_V6: w.HostIP6,
		} {
			routes, err := h.RouteList(nil, family)
			if err != nil {
				t.Fatal(err)
			}
			var gws []string
			for _, r := range routes {
				if r.Gw != nil {
					gws = append(gws, r.Gw.String())
				}
			}
			if len(gws) != 1 || gws[0] != gw.String() {
				t.Errorf("world routes with a gateway %v, want only %s", gws, gw)
			}
		}
	})

	t.Run("route already ours", func(t *testing.T) {
		dst := netip.PrefixFrom(w.Metadata, 32)
		if err := w.net.addRoutes([]netip.Prefix{dst}, w.HostIP); err != nil {
			t.Fatalf("adding a route the world already holds: %v", err)
		}
		if n := len(routesVia(t, w.Metadata, w.net.hostIndex)); n != 1 {
			t.Errorf("%d routes to %s, want 1", n, dst)
		}
		metadataGet(t, w)
	})
}

func TestNoIPv6NoStandIns(t *testing.T) {
	v4, _ := testPrefixes(8)
	w := startWorld(t, Config{Name: "kgwt8", Prefix: v4, NoIPv6: true, NoStandIns: true})

	for name, a := range map[string]netip.Addr{
		"HostIP6": w.HostIP6, "DNS6": w.DNS6.Addr(), "API6": w.API6, "Attacker6": w.Attacker6,
		"Other6": w.Other6, "Metadata": w.Metadata, "StrayDNS": w.StrayDNS,
	} {
		if a.IsValid() {
			t.Errorf("%s = %s, want zero", name, a)
		}
	}
	if got, _ := answerAddrs(query(t, w.DNS, "udp", w.APIHost(), dns.TypeAAAA)); len(got) != 0 {
		t.Errorf("AAAA for %s: %v, want none", w.APIHost(), got)
	}
	if resp := query(t, w.DNS, "udp", w.API6Host(), dns.TypeAAAA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("%s: rcode %s, want NXDOMAIN", w.API6Host(), dns.RcodeToString[resp.Rcode])
	}

	link, err := netlink.LinkByName(w.Name + "h")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(routesVia(t, metadataAddr, link.Attrs().Index)); n != 0 {
		t.Errorf("%d routes to %s via the world, want none", n, metadataAddr)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !a.IP.IsLinkLocalUnicast() {
			t.Errorf("host link has IPv6 address %s, want link-local only", a.IP)
		}
	}
}
