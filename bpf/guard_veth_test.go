//go:build linux

package bpf

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/keygate/keygate/internal/testutil"
)

// testVeth is a veth pair between a host namespace, which has the service
// addresses on its loopback, and a sandbox namespace routed through it.
type testVethPair struct {
	hostNS, sandboxNS netns.NsHandle
	name              string // host end
	ifindex           int    // host end, in hostNS
}

// The sandbox end also has these, to send from addresses it does not own.
const (
	spoofed4 = "10.239.1.3"
	spoofed6 = "fd6b:6761:7499:1::3"
)

func newTestVethPair(t *testing.T) testVethPair {
	t.Helper()
	p := testVethPair{hostNS: newServiceNetNS(t), sandboxNS: testutil.NewNetNS(t), name: randName("kgbt")}
	h := nlHandle(t, p.hostNS)
	peer := p.name + "s"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.name}, PeerName: peer}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	sb, err := h.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetNsFd(sb, int(p.sandboxNS)); err != nil {
		t.Fatal(err)
	}

	addAddr(t, p.hostNS, p.name, testHost4+"/24")
	addAddr(t, p.hostNS, p.name, testHost6+"/64")
	for _, a := range []string{testSandbox4 + "/24", spoofed4 + "/24",
		testSandbox6 + "/64", spoofed6 + "/64"} {
		addAddr(t, p.sandboxNS, peer, a)
	}
	host, err := h.LinkByName(p.name)
	if err != nil {
		t.Fatal(err)
	}
	p.ifindex = host.Attrs().Index
	if err := h.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}

	sh := nlHandle(t, p.sandboxNS)
	if sb, err = sh.LinkByName(peer); err != nil {
		t.Fatal(err)
	}
	if err := sh.LinkSetUp(sb); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{testHost4, testHost6} {
		r := &netlink.Route{LinkIndex: sb.Attrs().Index, Gw: net.ParseIP(gw)}
		if err := sh.RouteAdd(r); err != nil {
			t.Fatalf("route via %s: %v", gw, err)
		}
	}
	return p
}

// send sends payload from the sandbox namespace, from src to dst.
func (p testVethPair) send(t *testing.T, src, dst, payload string) {
	t.Helper()
	testutil.InNetNS(t, p.sandboxNS, func() {
		local := &net.UDPAddr{IP: net.ParseIP(src)}
		conn, err := net.ListenUDP("udp", local)
		if err != nil {
			t.Fatalf("bind %s: %v", src, err)
		}
		defer conn.Close()
		to := netip.MustParseAddrPort(dst)
		if _, err := conn.WriteToUDPAddrPort([]byte(payload), to); err != nil {
			t.Fatalf("send %s → %s: %v", src, dst, err)
		}
	})
}

// receive collects datagrams on pc until one carrying last arrives.
func receive(t *testing.T, pc *net.UDPConn, last string) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 512)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("receive on %s (have %q): %v", pc.LocalAddr(), got, err)
		}
		got = append(got, string(buf[:n]))
		if string(buf[:n]) == last {
			return got
		}
	}
}

// drain returns what arrived on pc within a short while.
func drain(pc *net.UDPConn) []string {
	var got []string
	buf := make([]byte, 512)
	pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		n, _, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return got
		}
		got = append(got, string(buf[:n]))
	}
}

// TestGuardVeth sends real traffic from a sandbox namespace through a
// guarded veth: only packets from the sandbox's own address to the service
// address get through.
func TestGuardVeth(t *testing.T) {
	testutil.RequireRoot(t)
	p := newTestVethPair(t)

	g, err := LoadGuard(testGuardConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	testutil.InNetNS(t, p.hostNS, func() { err = g.Attach(p.ifindex, testVeth) })
	if err != nil {
		t.Fatal(err)
	}

	for _, fam := range []struct {
		name                      string
		service, host, sb, spoofd string
	}{
		{"v4", testService4, testHost4, testSandbox4, spoofed4},
		{"v6", testService6, testHost6, testSandbox6, spoofed6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			svc := listenUDP(t, p.hostNS, "udp", net.JoinHostPort(fam.service, "9"))
			host := listenUDP(t, p.hostNS, "udp", net.JoinHostPort(fam.host, "9"))
			svcAddr, hostAddr := svc.LocalAddr().String(), host.LocalAddr().String()
			before := mustCounters(t, g.Counters)

			// The first packet also resolves the gateway (ARP or ND).
			p.send(t, fam.sb, svcAddr, "first")
			receive(t, svc, "first")
			p.send(t, fam.spoofd, svcAddr, "spoofed")
			p.send(t, fam.sb, hostAddr, "not service")
			p.send(t, fam.sb, svcAddr, "last")

			if got := receive(t, svc, "last"); !slices.Equal(got, []string{"last"}) {
				t.Errorf("service received %q, want only \"last\"", got)
			}
			if got := drain(host); len(got) != 0 {
				t.Errorf("host end received %q, want nothing", got)
			}
			after := mustCounters(t, g.Counters)
			for reason, min := range map[string]uint64{
				"pass_service": 2, "drop_spoofed_source": 1, "drop_not_service": 1,
			} {
				if d := after[reason] - before[reason]; d < min {
					t.Errorf("%s went up by %d, want at least %d", reason, d, min)
				}
			}
			if fam.name == "v4" && after["pass_arp"] == 0 {
				t.Error("no ARP passed")
			}
			if fam.name == "v6" && after["pass_nd"] == 0 {
				t.Error("no neighbour discovery passed")
			}
		})
	}
}

// tcxProgs returns the IDs of the programs on ifindex's tcx ingress, as
// seen from ns.
func tcxProgs(t *testing.T, ns netns.NsHandle, ifindex int) []ebpf.ProgramID {
	t.Helper()
	var res *link.QueryResult
	var err error
	testutil.InNetNS(t, ns, func() {
		opts := link.QueryOptions{Target: ifindex, Attach: ebpf.AttachTCXIngress}
		res, err = link.QueryPrograms(opts)
	})
	if err != nil {
		t.Fatalf("query tcx programs: %v", err)
	}
	var ids []ebpf.ProgramID
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids
}

func (g *Guard) progID(t *testing.T) ebpf.ProgramID {
	t.Helper()
	info, err := g.objs.KgGuardIngress.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// loadGuardIn loads a guard from within ns, where it takes over pins of
// ns's interfaces.
func loadGuardIn(t *testing.T, ns netns.NsHandle, cfg GuardConfig) *Guard {
	t.Helper()
	var g *Guard
	var err error
	testutil.InNetNS(t, ns, func() { g, err = LoadGuard(cfg) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func attachIn(t *testing.T, ns netns.NsHandle, g *Guard, ifindex int) {
	t.Helper()
	var err error
	testutil.InNetNS(t, ns, func() { err = g.Attach(ifindex, testVeth) })
	if err != nil {
		t.Fatal(err)
	}
}

// TestPinnedGuard checks that a pinned guard outlives its agent, is taken
// over by the next, and is removed by Detach, by its veth's deletion and
// by Unpin.
func TestPinnedGuard(t *testing.T) {
	testutil.RequireRoot(t)
	p := newTestVethPair(t)
	cfg := testGuardConfig
	cfg.PinDir = testPinDir(t)
	pin := filepath.Join(cfg.PinDir, guardPinPrefix+p.name)

	first := loadGuardIn(t, p.hostNS, cfg)
	attachIn(t, p.hostNS, first, p.ifindex)
	firstID := first.progID(t)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := tcxProgs(t, p.hostNS, p.ifindex); !slices.Equal(got, []ebpf.ProgramID{firstID}) {
		t.Fatalf("after Close: attached %v, want the first guard's %d", got, firstID)
	}
	// Still guarding, with its addresses: the sandbox still reaches the
	// service.
	svc := listenUDP(t, p.hostNS, "udp4", net.JoinHostPort(testService4, "9"))
	p.send(t, testSandbox4, svc.LocalAddr().String(), "no agent")
	receive(t, svc, "no agent")

	second := loadGuardIn(t, p.hostNS, cfg)
	attachIn(t, p.hostNS, second, p.ifindex)
	secondID := second.progID(t)
	if got := tcxProgs(t, p.hostNS, p.ifindex); !slices.Equal(got, []ebpf.ProgramID{secondID}) {
		t.Fatalf("after takeover: attached %v, want the second guard's", got)
	}
	if n := mustCounters(t, second.Counters); n["pass_service"] == 0 {
		t.Error("counters were not kept across agents")
	}

	if err := second.Detach(p.ifindex); err != nil {
		t.Fatal(err)
	}
	if got := tcxProgs(t, p.hostNS, p.ifindex); len(got) != 0 {
		t.Errorf("after Detach: attached %v, want nothing", got)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Detach: pin %s: %v, want it gone", pin, err)
	}

	// A veth deleted while no agent runs: the next guard drops its pin.
	attachIn(t, p.hostNS, second, p.ifindex)
	second.Close()
	h := nlHandle(t, p.hostNS)
	l, err := h.LinkByName(p.name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	third := loadGuardIn(t, p.hostNS, cfg)
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after the veth went: pin %s: %v, want it gone", pin, err)
	}
	var cfgs int
	var k uint32
	var v guardVethCfg
	for it := third.objs.GuardVeths.Iterate(); it.Next(&k, &v); {
		cfgs++
	}
	if cfgs != 0 {
		t.Errorf("%d veth configurations left, want none", cfgs)
	}

	if err := third.Unpin(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Unpin: pin directory: %v, want it gone", err)
	}
}
