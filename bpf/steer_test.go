//go:build linux

package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netns"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/pkg/tproxy"
)

// The steering tests' addresses: 10.238.0.0/16 and fd6b:6761:7488::/48,
// apart from the guard tests' (which other packages' tests also avoid).
const (
	steerService4 = "10.238.0.1"
	steerService6 = "fd6b:6761:7488::1"
	steerSandbox4 = "10.238.1.2"
	steerHost4    = "10.238.1.1"
	steerSandbox6 = "fd6b:6761:7488:1::2"
	steerHost6    = "fd6b:6761:7488:1::1"
)

var steerGuardConfig = GuardConfig{
	Service4: netip.MustParseAddr(steerService4),
	Service6: netip.MustParseAddr(steerService6),
}

var steerVeth = GuardVeth{
	Sandbox4: netip.MustParseAddr(steerSandbox4),
	Sandbox6: netip.MustParseAddr(steerSandbox6),
	Host4:    netip.MustParseAddr(steerHost4),
	Host6:    netip.MustParseAddr(steerHost6),
	Mode:     CaptureTC,
}

const tcxPass = 0 // TCX_PASS

// tcpSeg is a TCP segment from port 40000 to dst:port with the given
// flags, over ip (an *layers.IPv4 or *layers.IPv6).
func tcpSeg(t *testing.T, ip gopacket.SerializableLayer, port uint16, syn, ack bool) []byte {
	tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), SYN: syn, ACK: ack,
		Window: 1024}
	return frame(t, ip, tcp, payload)
}

// TestSteerVerdicts runs the steering program on hand-built frames, for
// every decision that needs no socket. As for the guard, a test run has
// skb->ifindex 1, so ifindex 1 is configured as a tc-mode veth. Assigning
// a socket needs a packet at tc ingress, which a test run is not: with
// sockets set, the program gets as far as bpf_sk_assign, which refuses.
func TestSteerVerdicts(t *testing.T) {
	testutil.RequireRoot(t)
	g, err := LoadGuard(steerGuardConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.configure(1, steerVeth); err != nil {
		t.Fatal(err)
	}
	events := mustDenyEvents(t, g.DenyEvents)

	const sb4, host4, sb6, host6 = steerSandbox4, steerHost4, steerSandbox6, steerHost6
	const world4, world6 = "198.51.100.9", "2001:db8::9"
	const next, drop = tcxNext, tcxDrop

	mf := ip4(sb4, world4, layers.IPProtocolUDP)
	mf.Flags = layers.IPv4MoreFragments
	later := ip4(sb4, world4, layers.IPProtocolUDP)
	later.FragOffset = 8
	badIHL := tcp4(t, sb4, world4, 443)
	badIHL[14] = 0x43
	// IPv6, as an IPv4 frame this short would be padded to 60 bytes.
	shortTCP := frame(t, ip6(sb6, world6, layers.IPProtocolTCP), gopacket.Payload{0, 1, 2, 3})
	hopByHop := frame(t, ip6(sb6, world6, layers.IPProtocolIPv6HopByHop),
		gopacket.Payload{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0}, tcpTo(443))
	fragment6 := frame(t, ip6(sb6, world6, layers.IPProtocolIPv6Fragment),
		gopacket.Payload{byte(layers.IPProtocolUDP), 0, 0, 1, 0, 0, 0, 1}, udpTo(53), payload)

	cases := []verdictCase{
		{"ARP", arpRequest(t, sb4, host4), next, "steer_next_not_ip"},
		{"VLAN tagged", frame(t, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4},
			ip4(sb4, world4, layers.IPProtocolTCP), tcpTo(443)), next, "steer_next_not_ip"},
		{"v4 spoofed source", tcp4(t, "10.238.1.3", world4, 443), next,
			"steer_next_foreign_source"},
		{"v6 spoofed source", tcp6(t, "fd6b:6761:7488:1::3", world6, 443), next,
			"steer_next_foreign_source"},
		{"NS from link-local", neighSolicit(t, "fe80::2", "ff02::1:ff00:1", host6, 255), next,
			"steer_next_foreign_source"},
		{"v4 to service", tcp4(t, sb4, steerService4, 15001), next, "steer_next_service"},
		{"v6 to service", udp6(t, sb6, steerService6, 15053), next, "steer_next_service"},
		{"v4 port unreachable to host end", icmp4(t, sb4, host4, 3, 3), next, "steer_next_host"},
		{"v4 ping to host end", icmp4(t, sb4, host4, 8, 0), next, "steer_next_host"},
		{"NS from the sandbox's address", neighSolicit(t, sb6, "ff02::1:ff00:1", host6, 255),
			next, "steer_next_host"},
		{"v6 ping to host end", icmp6(t, sb6, host6, 128, 64), next, "steer_next_host"},
		{"v4 ping to the world", icmp4(t, sb4, world4, 8, 0), drop, "steer_drop_icmp"},
		{"v6 ping to the world", icmp6(t, sb6, world6, 128, 64), drop, "steer_drop_icmp"},
		{"v4 UDP 9999", udp4(t, sb4, world4, 9999), drop, "steer_drop_udp"},
		{"v6 QUIC", udp6(t, sb6, world6, 443), drop, "steer_drop_udp"},
		{"v4 SCTP", frame(t, ip4(sb4, world4, layers.IPProtocolSCTP), payload), drop,
			"steer_drop_other"},
		{"v6 no next header", frame(t, ip6(sb6, world6, layers.IPProtocolNoNextHeader)), drop,
			"steer_drop_other"},
		{"v4 first fragment", frame(t, mf, udpTo(53), payload), drop, "steer_drop_fragment"},
		{"v4 later fragment", frame(t, later, payload), drop, "steer_drop_fragment"},
		{"v6 hop-by-hop", hopByHop, drop, "steer_drop_ipv6_ext"},
		{"v6 fragment", fragment6, drop, "steer_drop_ipv6_ext"},
		{"v4 mDNS", udp4(t, sb4, "224.0.0.251", 5353), drop, "steer_drop_multicast"},
		{"v4 broadcast DNS", udp4(t, sb4, "255.255.255.255", 53), drop, "steer_drop_multicast"},
		{"v6 mDNS", udp6(t, sb6, "ff02::fb", 5353), drop, "steer_drop_multicast"},
		{"v4 header length 12", badIHL, drop, "steer_drop_malformed"},
		{"v6 TCP header cut short", shortTCP, drop, "steer_drop_malformed"},
	}
	// Without sockets, everything that would be steered fails closed.
	noSockets := []verdictCase{
		{"v4 SYN", tcp4(t, sb4, world4, 443), drop, "steer_no_listener"},
		{"v6 SYN", tcp6(t, sb6, world6, 443), drop, "steer_no_listener"},
		{"v4 ACK of no flow", tcpSeg(t, ip4(sb4, world4, layers.IPProtocolTCP), 443, false, true),
			drop, "steer_no_listener"},
		{"v4 SYN to port 53", tcp4(t, sb4, world4, 53), drop, "steer_no_listener"},
		{"v4 DNS", udp4(t, sb4, world4, 53), drop, "steer_no_listener"},
		{"v6 DNS", udp6(t, sb6, world6, 53), drop, "steer_no_listener"},
	}
	runVerdicts(t, g.objs.KgSteerIngress, g.SteerCounters, events, append(cases, noSockets...))

	t.Run("sockets set", func(t *testing.T) {
		setTestSteerSockets(t, g, testutil.NewNetNS(t))
		runVerdicts(t, g.objs.KgSteerIngress, g.SteerCounters, events, []verdictCase{
			{"v4 SYN", tcp4(t, sb4, world4, 443), drop, "steer_assign_failed"},
			{"v6 DNS", udp6(t, sb6, world6, 53), drop, "steer_assign_failed"},
			{"v4 ping to the world", icmp4(t, sb4, world4, 8, 0), drop, "steer_drop_icmp"},
		})
	})

	t.Run("cgroup mode", func(t *testing.T) {
		cgroupVeth := steerVeth
		cgroupVeth.Mode = CaptureCgroup
		if err := g.configure(1, cgroupVeth); err != nil {
			t.Fatal(err)
		}
		runVerdicts(t, g.objs.KgSteerIngress, g.SteerCounters, events, []verdictCase{
			{"v4 SYN", tcp4(t, sb4, world4, 443), next, "steer_next_cgroup_mode"},
			{"v4 UDP 9999", udp4(t, sb4, world4, 9999), next, "steer_next_cgroup_mode"},
		})
		if err := g.Detach(1); err != nil {
			t.Fatal(err)
		}
		runVerdicts(t, g.objs.KgSteerIngress, g.SteerCounters, events, []verdictCase{
			{"unconfigured", tcp4(t, sb4, world4, 443), next, "steer_next_cgroup_mode"},
		})
	})
}

// testSteerSockets are the transparent sockets of a stand-in agent, on
// the service addresses (which a transparent socket may bind even where
// they are not local): the proxy on any port, the resolver on 53.
type testSteerSockets struct {
	SteerSockets
	dns4, dns6 netip.AddrPort // the resolver's addresses, TCP and UDP
}

// setTestSteerSockets opens transparent sockets in ns, closed when t
// ends, and sets them as g's steering sockets.
func setTestSteerSockets(t *testing.T, g *Guard, ns netns.NsHandle) testSteerSockets {
	t.Helper()
	var s testSteerSockets
	testutil.InNetNS(t, ns, func() {
		s.Proxy4 = listenTransparent(t, steerService4)
		s.Proxy6 = listenTransparent(t, steerService6)
		// Port 53, so that UDP answers come from the port the sandbox
		// asked; TCP shares it to make one resolver address.
		s.dns4 = netip.AddrPortFrom(netip.MustParseAddr(steerService4), 53)
		s.dns6 = netip.AddrPortFrom(netip.MustParseAddr(steerService6), 53)
		s.DNSTCP4 = listenTransparentAt(t, s.dns4)
		s.DNSTCP6 = listenTransparentAt(t, s.dns6)
		s.DNSUDP4 = listenTransparentUDP(t, s.dns4)
		s.DNSUDP6 = listenTransparentUDP(t, s.dns6)
	})
	if err := g.SetSteerSockets(s.SteerSockets); err != nil {
		t.Fatal(err)
	}
	return s
}

// listenTransparent opens a transparent TCP listener on addr, any port.
func listenTransparent(t *testing.T, addr string) *net.TCPListener {
	t.Helper()
	return listenTransparentAt(t, netip.AddrPortFrom(netip.MustParseAddr(addr), 0))
}

func listenTransparentAt(t *testing.T, addr netip.AddrPort) *net.TCPListener {
	t.Helper()
	ln, err := tproxy.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func listenTransparentUDP(t *testing.T, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	conn, err := tproxy.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSetSteerSockets checks that sockets the steering program could not
// use are refused with a reason, and that nil sockets empty their slots.
func TestSetSteerSockets(t *testing.T) {
	testutil.RequireRoot(t)
	g, err := LoadGuard(steerGuardConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	ns := testutil.NewNetNS(t)

	var plain, mptcp, v6 *net.TCPListener
	var udp5353 *net.UDPConn
	testutil.InNetNS(t, ns, func() {
		var lc net.ListenConfig // MPTCP by default since Go 1.24
		ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mptcp = ln.(*net.TCPListener)
		lc.SetMultipathTCP(false)
		if ln, err = lc.Listen(t.Context(), "tcp4", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		plain = ln.(*net.TCPListener)
		v6 = listenTransparent(t, "::1")
		udp5353 = listenTransparentUDP(t, netip.MustParseAddrPort("127.0.0.1:5353"))
	})
	t.Cleanup(func() { mptcp.Close(); plain.Close() })

	for _, tc := range []struct {
		name  string
		socks SteerSockets
	}{
		{"not transparent", SteerSockets{Proxy4: plain}},
		{"MPTCP", SteerSockets{Proxy4: mptcp}},
		{"IPv6 as IPv4", SteerSockets{DNSTCP4: v6}},
		{"UDP not on port 53", SteerSockets{DNSUDP4: udp5353}},
	} {
		err := g.SetSteerSockets(tc.socks)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		t.Logf("%s: %v", tc.name, err)
	}

	slots := func() int {
		var n int
		for k := range uint32(guardSteerSocketSOCK_MAX) {
			var cookie uint64
			if g.objs.SteerSockets.Lookup(k, &cookie) == nil {
				n++
			}
		}
		return n
	}
	setTestSteerSockets(t, g, ns)
	if n := slots(); n != int(guardSteerSocketSOCK_MAX) {
		t.Errorf("%d slots set, want all", n)
	}
	if err := g.SetSteerSockets(SteerSockets{}); err != nil {
		t.Fatal(err)
	}
	if n := slots(); n != 0 {
		t.Errorf("%d slots set after setting none, want 0", n)
	}
}
