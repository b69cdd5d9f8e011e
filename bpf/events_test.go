//go:build linux

package bpf

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"

	"github.com/keygate/keygate/internal/testutil"
)

// ringEvents is how many deny events a ring holds: 256 KiB in records of
// 8 bytes of header and 64 of event.
const ringEvents = 256 << 10 / 72

// mustDenyEvents opens a deny event reader with open, closed when t ends.
func mustDenyEvents(t *testing.T, open func() (*EventReader, error)) *EventReader {
	t.Helper()
	r, err := open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// drainEvents returns the events r holds, without waiting for more.
func drainEvents(t *testing.T, r *EventReader) []DenyEvent {
	t.Helper()
	r.ring.SetDeadline(time.Now())
	defer r.ring.SetDeadline(time.Time{})
	var evs []DenyEvent
	for {
		ev, err := r.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return evs
		}
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

// waitEvent reads r until an event that match accepts, for up to five
// seconds, and returns it.
func waitEvent(t *testing.T, r *EventReader, what string, match func(DenyEvent) bool) DenyEvent {
	t.Helper()
	r.ring.SetDeadline(time.Now().Add(5 * time.Second))
	defer r.ring.SetDeadline(time.Time{})
	var seen []DenyEvent
	for {
		ev, err := r.Read()
		if err != nil {
			t.Fatalf("waiting for the deny event of %s (saw %+v): %v", what, seen, err)
		}
		if match(ev) {
			return ev
		}
		seen = append(seen, ev)
	}
}

// reported reports whether a refusal counted as reason is also reported as
// a DenyEvent.
func reported(reason string) bool {
	for _, prefix := range []string{"deny_", "skb_drop_", "drop_", "steer_drop_"} {
		if strings.HasPrefix(reason, prefix) {
			return true
		}
	}
	return reason == "steer_no_listener" || reason == "steer_assign_failed"
}

// checkTime checks that ev happened between start and now, give or take
// the error of the boot time offset.
func checkTime(t *testing.T, ev DenyEvent, start time.Time) {
	t.Helper()
	if ev.Time.Before(start.Add(-time.Second)) || ev.Time.After(time.Now().Add(time.Second)) {
		t.Errorf("%s event at %v, want between %v and now", ev.Reason, ev.Time, start)
	}
}

// allowPing lets every group open ICMP datagram sockets in ns, which new
// namespaces allow no one.
func allowPing(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	var err error
	testutil.InNetNS(t, ns, func() {
		err = os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDenyEventsCgroup runs a child in a captured cgroup that tries what
// the socket hooks refuse and the cgroup_skb filter drops, and reads the
// events: one per refusal, naming the child's cgroup. Then it floods the
// ring while nothing reads it: refusals go on, and the events that do not
// fit are counted as lost.
func TestDenyEventsCgroup(t *testing.T) {
	testutil.RequireRoot(t)
	ns := newServiceNetNS(t)
	allowPing(t, ns)
	parent, child := testCgroups(t)
	childID, err := CgroupID(child)
	if err != nil {
		t.Fatal(err)
	}

	c, err := LoadCgroup(testCgroupConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Attach(parent); err != nil {
		t.Fatal(err)
	}
	events := mustDenyEvents(t, c.DenyEvents)

	ap := netip.MustParseAddrPort
	any4, any6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	svc4, svc6 := netip.MustParseAddr(testService4), netip.MustParseAddr(testService6)
	want := []struct {
		reason, proto string
		src           netip.Addr // the port is the kernel's choice
		dst           netip.AddrPort
	}{
		{"deny_udp", "udp", any4, ap("198.51.100.7:9999")}, // sendmsg4
		{"deny_udp", "udp", any4, ap("198.51.100.7:9999")}, // connect4
		{"deny_udp6", "udp", any6, ap("[2001:db8::7]:9999")},
		{"deny_other", "icmp", any4, ap("198.51.100.7:0")},
		{"deny_other6", "icmpv6", any6, ap("[2001:db8::7]:0")},
		{"skb_drop_v4", "icmp", svc4, netip.AddrPortFrom(svc4, 0)},
		{"skb_drop_v6", "icmpv6", svc6, netip.AddrPortFrom(svc6, 0)},
	}

	start := time.Now()
	for name, res := range parseChild(t, runChild(t, ns, child, childDenied)) {
		if res.Err != "EPERM" {
			t.Errorf("%s: %+v, want EPERM", name, res)
		}
	}
	evs := drainEvents(t, events)
	if len(evs) != len(want) {
		t.Fatalf("%d deny events %+v, want %d", len(evs), evs, len(want))
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Reason != w.reason || ev.Proto != w.proto || ev.Src.Addr() != w.src ||
			ev.Dst != w.dst || ev.CgroupID != childID || ev.Ifindex != 0 {
			t.Errorf("event %d: %+v, want %s %s from %s to %s, cgroup %d",
				i, ev, w.reason, w.proto, w.src, w.dst, childID)
		}
		checkTime(t, ev, start)
	}

	before := mustCounters(t, c.Counters)
	res := parseChild(t, runChild(t, ns, child, childFlood))["flood"]
	if res.Err != "EPERM" {
		t.Fatalf("flood: %+v, want every send refused", res)
	}
	after := mustCounters(t, c.Counters)
	denied := after["deny_udp"] - before["deny_udp"]
	lost := after["event_lost"] - before["event_lost"]
	read := uint64(len(drainEvents(t, events)))
	if denied != floodCount || read != ringEvents || read+lost != floodCount {
		t.Errorf("flood of %d: %d refused, %d events read, %d lost; want all refused, %d read",
			floodCount, denied, read, lost, ringEvents)
	}

	// Drained, the ring takes events again.
	runChild(t, ns, child, childDenied)
	if evs := drainEvents(t, events); len(evs) != len(want) {
		t.Errorf("after the flood: %d deny events, want %d", len(evs), len(want))
	}
}

// TestDenyEventsNoIP6 connects to an IPv6 address from a cgroup captured
// without IPv6 services, which connect6 refuses.
func TestDenyEventsNoIP6(t *testing.T) {
	testutil.RequireRoot(t)
	ns := newServiceNetNS(t)
	parent, child := testCgroups(t)
	childID, err := CgroupID(child)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testCgroupConfig
	cfg.Proxy6, cfg.Resolver6 = netip.AddrPort{}, netip.AddrPort{}
	c, err := LoadCgroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Attach(parent); err != nil {
		t.Fatal(err)
	}
	events := mustDenyEvents(t, c.DenyEvents)

	if res := parseChild(t, runChild(t, ns, child, childTCP6))["tcp6"]; res.Err != "EPERM" {
		t.Errorf("connect: %+v, want EPERM", res)
	}
	evs := drainEvents(t, events)
	want := netip.MustParseAddrPort("[2001:db8::7]:443")
	if len(evs) != 1 || evs[0].Reason != "deny_no_ip6" || evs[0].Proto != "tcp" ||
		evs[0].Dst != want || evs[0].CgroupID != childID {
		t.Errorf("deny events %+v, want one deny_no_ip6 for TCP to %s from cgroup %d",
			evs, want, childID)
	}
}

// TestDenyEventsGuardVeth sends packets from spoofed sources through a
// guarded veth and reads the guard's events for them.
func TestDenyEventsGuardVeth(t *testing.T) {
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
	events := mustDenyEvents(t, g.DenyEvents)

	for _, fam := range []struct{ name, service, sb, spoofd string }{
		{"v4", testService4, testSandbox4, spoofed4},
		{"v6", testService6, testSandbox6, spoofed6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			svc := listenUDP(t, p.hostNS, "udp", net.JoinHostPort(fam.service, "9"))
			svcAddr := svc.LocalAddr().(*net.UDPAddr).AddrPort()
			// Resolves the gateway from the sandbox's own address.
			p.send(t, fam.sb, svcAddr.String(), "first")
			receive(t, svc, "first")

			start := time.Now()
			p.send(t, fam.spoofd, svcAddr.String(), "spoofed")
			ev := waitEvent(t, events, "the spoofed packet", func(ev DenyEvent) bool {
				return ev.Reason == "drop_spoofed_source" && ev.Proto == "udp"
			})
			if ev.Ifindex != p.ifindex || ev.CgroupID != 0 || ev.Dst != svcAddr ||
				ev.Src.Addr() != netip.MustParseAddr(fam.spoofd) || ev.Src.Port() == 0 {
				t.Errorf("event %+v, want from %s to %s on interface %d",
					ev, fam.spoofd, svcAddr, p.ifindex)
			}
			checkTime(t, ev, start)
		})
	}
}

// TestDenyEventsSteerVeth sends UDP other than DNS from a sandbox in tc
// mode and reads the steering program's events for it, from the guard.
func TestDenyEventsSteerVeth(t *testing.T) {
	testutil.RequireRoot(t)
	w := newSteerWorld(t)
	events := mustDenyEvents(t, w.guard.DenyEvents)

	for _, dst := range []string{"198.51.100.9:9999", "[2001:db8::9]:443"} {
		t.Run(dst, func(t *testing.T) {
			var local netip.AddrPort
			start := time.Now()
			testutil.InNetNS(t, w.sandboxNS, func() {
				conn, err := net.Dial("udp", dst)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				local = conn.LocalAddr().(*net.UDPAddr).AddrPort()
				conn.Write([]byte("not DNS"))
			})
			ev := waitEvent(t, events, "UDP to "+dst, func(ev DenyEvent) bool {
				return ev.Reason == "steer_drop_udp"
			})
			if ev.Ifindex != w.ifindex || ev.CgroupID != 0 || ev.Proto != "udp" ||
				ev.Src != local || ev.Dst != netip.MustParseAddrPort(dst) {
				t.Errorf("event %+v, want UDP from %s to %s on interface %d",
					ev, local, dst, w.ifindex)
			}
			checkTime(t, ev, start)
		})
	}
}

// TestDenyEventFields checks what the events of hand-built packets say of
// them: protocols, addresses and ports as far as the headers show them.
// Test runs have skb->ifindex 1 (see TestGuardVerdicts).
func TestDenyEventFields(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := LoadCgroup(testCgroupConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g := loadConfiguredGuard(t, testGuardConfig, testVeth)
	s := loadConfiguredGuard(t, steerGuardConfig, steerVeth)
	cEvents := mustDenyEvents(t, c.DenyEvents)
	gEvents := mustDenyEvents(t, g.DenyEvents)
	sEvents := mustDenyEvents(t, s.DenyEvents)

	const sb4, sb6 = testSandbox4, testSandbox6
	const ssb4, ssb6 = steerSandbox4, steerSandbox6
	ap := netip.MustParseAddrPort
	later := ip4(ssb4, "198.51.100.9", layers.IPProtocolUDP)
	later.FragOffset = 8
	hopByHop := frame(t, ip6(ssb6, "2001:db8::9", layers.IPProtocolIPv6HopByHop),
		gopacket.Payload{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0}, tcpTo(443))
	lldp := frame(t, rawEtherType(layers.EthernetTypeLinkLayerDiscovery),
		gopacket.Payload(make([]byte, 46)))

	for _, tc := range []struct {
		name   string
		prog   *ebpf.Program
		events *EventReader
		data   []byte
		want   DenyEvent // but its Time and, for cgroup_skb, its CgroupID
	}{
		{"cgroup_skb TCP", c.objs.KgSkbEgress, cEvents, tcp4(t, sb4, "198.51.100.7", 443),
			DenyEvent{Reason: "skb_drop_v4", Proto: "tcp", Src: ap(sb4 + ":40000"),
				Dst: ap("198.51.100.7:443")}},
		{"cgroup_skb ICMPv6", c.objs.KgSkbEgress, cEvents,
			icmp6(t, sb6, testService6, 128, 64),
			DenyEvent{Reason: "skb_drop_v6", Proto: "icmpv6", Src: ap("[" + sb6 + "]:0"),
				Dst: ap("[" + testService6 + "]:0")}},
		{"cgroup_skb ARP", c.objs.KgSkbEgress, cEvents, arpRequest(t, sb4, testHost4),
			DenyEvent{Reason: "skb_drop_other_proto"}},
		{"guard ARP", g.objs.KgGuardIngress, gEvents, arpRequest(t, spoofed4, testHost4),
			DenyEvent{Ifindex: 1, Reason: "drop_spoofed_source", Proto: "arp",
				Src: ap(spoofed4 + ":0"), Dst: ap(testHost4 + ":0")}},
		{"guard UDP", g.objs.KgGuardIngress, gEvents, udp6(t, sb6, "2001:db8::7", 443),
			DenyEvent{Ifindex: 1, Reason: "drop_not_service", Proto: "udp",
				Src: ap("[" + sb6 + "]:40000"), Dst: ap("[2001:db8::7]:443")}},
		{"guard LLDP", g.objs.KgGuardIngress, gEvents, lldp,
			DenyEvent{Ifindex: 1, Reason: "drop_other_ethertype"}},
		{"steer fragment", s.objs.KgSteerIngress, sEvents, frame(t, later, payload),
			DenyEvent{Ifindex: 1, Reason: "steer_drop_fragment", Proto: "udp",
				Src: ap(ssb4 + ":0"), Dst: ap("198.51.100.9:0")}},
		{"steer hop-by-hop", s.objs.KgSteerIngress, sEvents, hopByHop,
			DenyEvent{Ifindex: 1, Reason: "steer_drop_ipv6_ext", Proto: "hopopt",
				Src: ap("[" + ssb6 + "]:0"), Dst: ap("[2001:db8::9]:0")}},
		{"steer no listener", s.objs.KgSteerIngress, sEvents, tcp4(t, ssb4, "198.51.100.9", 443),
			DenyEvent{Ifindex: 1, Reason: "steer_no_listener", Proto: "tcp",
				Src: ap(ssb4 + ":40000"), Dst: ap("198.51.100.9:443")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if _, err := tc.prog.Run(&ebpf.RunOptions{Data: tc.data}); err != nil {
				t.Fatalf("test run: %v", err)
			}
			evs := drainEvents(t, tc.events)
			if len(evs) != 1 {
				t.Fatalf("deny events %+v, want one", evs)
			}
			ev := evs[0]
			checkTime(t, ev, start)
			ev.Time = time.Time{}
			if tc.prog == c.objs.KgSkbEgress {
				ev.CgroupID = 0 // the test run's stand-in socket's
			}
			if ev != tc.want {
				t.Errorf("event %+v,\nwant %+v", ev, tc.want)
			}
		})
	}
}

// loadConfiguredGuard loads a guard with cfg and configures ifindex 1, the
// test runs' interface, as v.
func loadConfiguredGuard(t *testing.T, cfg GuardConfig, v GuardVeth) *Guard {
	t.Helper()
	g, err := LoadGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.configure(1, v); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestDenyEventsLost floods each program's ring with drops while nothing
// reads it: the drops are counted and dropped as before, what does not fit
// is counted as event_lost, and a full ring changes no other verdict.
func TestDenyEventsLost(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := LoadCgroup(testCgroupConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	g := loadConfiguredGuard(t, testGuardConfig, testVeth)
	s := loadConfiguredGuard(t, steerGuardConfig, steerVeth)

	for _, tc := range []struct {
		name             string
		prog             *ebpf.Program
		counters, losses func() (map[string]uint64, error)
		events           func() (*EventReader, error)
		drop, pass       []byte
		dropped, passed  uint32 // verdicts
		reason           string
	}{
		{"cgroup_skb", c.objs.KgSkbEgress, c.Counters, c.Counters, c.DenyEvents,
			tcp4(t, testSandbox4, "198.51.100.7", 443),
			tcp4(t, testSandbox4, testService4, testProxy), 0, 1, "skb_drop_v4"},
		{"guard", g.objs.KgGuardIngress, g.Counters, g.Counters, g.DenyEvents,
			tcp4(t, spoofed4, testService4, testProxy),
			tcp4(t, testSandbox4, testService4, testProxy), tcxDrop, tcxNext,
			"drop_spoofed_source"},
		// The steering program's losses count with the guard's, whose
		// ring it shares.
		{"steer", s.objs.KgSteerIngress, s.SteerCounters, s.Counters, s.DenyEvents,
			udp4(t, steerSandbox4, "198.51.100.9", 9999),
			tcp4(t, steerSandbox4, steerService4, 15001), tcxDrop, tcxNext,
			"steer_drop_udp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := mustDenyEvents(t, tc.events)
			before, lostBefore := mustCounters(t, tc.counters), mustCounters(t, tc.losses)
			ret, err := tc.prog.Run(&ebpf.RunOptions{Data: tc.drop, Repeat: floodCount})
			if err != nil {
				t.Fatalf("test run: %v", err)
			}
			if ret != tc.dropped {
				t.Errorf("verdict with the ring full = %#x, want %#x", ret, tc.dropped)
			}
			if ret, err := tc.prog.Run(&ebpf.RunOptions{Data: tc.pass}); err != nil ||
				ret != tc.passed {
				t.Errorf("passing verdict with the ring full = %#x, %v; want %#x",
					ret, err, tc.passed)
			}

			after, lostAfter := mustCounters(t, tc.counters), mustCounters(t, tc.losses)
			dropped := after[tc.reason] - before[tc.reason]
			lost := lostAfter["event_lost"] - lostBefore["event_lost"]
			read := uint64(len(drainEvents(t, events)))
			if dropped != floodCount || read != ringEvents || read+lost != floodCount {
				t.Errorf("%d dropped, %d events read, %d lost; want %d dropped, %d read",
					dropped, read, lost, floodCount, ringEvents)
			}
		})
	}
}

// TestPinnedDenyEvents checks that events wait in the pinned rings for the
// next agent, each object's in its own though they share a pin directory,
// and that a ring pinned with another size is replaced.
func TestPinnedDenyEvents(t *testing.T) {
	testutil.RequireRoot(t)
	dir := testPinDir(t)
	if err := preparePinDir(dir); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{Name: "deny_events", Type: ebpf.RingBuf,
		MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(dir, "deny_events")); err != nil {
		t.Fatal(err)
	}

	ccfg, gcfg := testCgroupConfig, testGuardConfig
	ccfg.PinDir, gcfg.PinDir = dir, dir
	load := func() (*CgroupCapture, *Guard) {
		c, err := LoadCgroup(ccfg)
		if err != nil {
			t.Fatal(err)
		}
		g, err := LoadGuard(gcfg)
		if err != nil {
			c.Close()
			t.Fatal(err)
		}
		return c, g
	}

	// A first agent's programs drop a packet each, and the agent goes.
	c, g := load()
	if n := c.objs.DenyEvents.MaxEntries(); n != 256<<10 {
		t.Errorf("deny_events holds %d bytes: the old pin was not replaced", n)
	}
	data := tcp4(t, testSandbox4, "198.51.100.7", 443)
	for _, prog := range []*ebpf.Program{c.objs.KgSkbEgress, g.objs.KgGuardIngress} {
		if _, err := prog.Run(&ebpf.RunOptions{Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	g.Close()

	c, g = load()
	t.Cleanup(func() {
		c.Unpin()
		c.Close()
		g.Unpin()
		g.Close()
	})
	for _, tc := range []struct {
		name   string
		events func() (*EventReader, error)
		reason string
	}{
		{"cgroup", c.DenyEvents, "skb_drop_v4"},
		{"guard", g.DenyEvents, "drop_unknown_veth"},
	} {
		evs := drainEvents(t, mustDenyEvents(t, tc.events))
		if len(evs) != 1 || evs[0].Reason != tc.reason {
			t.Errorf("%s events after a restart: %+v, want one for %s", tc.name, evs, tc.reason)
		}
	}
}
