//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/keygate/keygate/internal/testutil"
)

var testGuardConfig = GuardConfig{
	Service4: netip.MustParseAddr(testService4),
	Service6: netip.MustParseAddr(testService6),
}

// The veth the guard tests use: the sandbox end and the host end.
const (
	testSandbox4 = "10.239.1.2"
	testHost4    = "10.239.1.1"
	testSandbox6 = "fd6b:6761:7499:1::2"
	testHost6    = "fd6b:6761:7499:1::1"
)

var testVeth = GuardVeth{
	Sandbox4: netip.MustParseAddr(testSandbox4),
	Sandbox6: netip.MustParseAddr(testSandbox6),
	Host4:    netip.MustParseAddr(testHost4),
	Host6:    netip.MustParseAddr(testHost6),
}

// tcx verdicts, as the guard returns them.
const (
	tcxNext = 0xffffffff // TCX_NEXT (-1): pass, unless a later program drops
	tcxDrop = 2          // TCX_DROP
)

// TestGuardVerdicts runs the guard on hand-built frames. A tc test run
// takes the whole Ethernet frame and runs with skb->ifindex 1 (the test
// network namespace's loopback), so ifindex 1 gets testVeth's addresses.
func TestGuardVerdicts(t *testing.T) {
	testutil.RequireRoot(t)
	g, err := LoadGuard(testGuardConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.configure(1, testVeth); err != nil {
		t.Fatal(err)
	}
	events := mustDenyEvents(t, g.DenyEvents)

	const sb4, host4, sb6, host6 = testSandbox4, testHost4, testSandbox6, testHost6
	const spoof4, spoof6 = "10.239.1.3", "fd6b:6761:7499:1::3"
	const other4, other6 = "198.51.100.7", "2001:db8::7"
	const next, drop = tcxNext, tcxDrop

	// Inconsistent headers, patched after serializing. (The kernel's test
	// run refuses frames too short for their IP header, so truncation
	// cannot be tested this way.)
	badARP := arpRequest(t, sb4, host4)
	badARP[14+5] = 16 // protocol address length
	badIHL := tcp4(t, sb4, testService4, testProxy)
	badIHL[14] = 0x43 // version 4, header length 3 words
	badVersion := tcp6(t, sb6, testService6, testProxy)
	badVersion[14] = 0x45

	runVerdicts(t, g.objs.KgGuardIngress, g.Counters, events, []verdictCase{
		{"v4 TCP to service", tcp4(t, sb4, testService4, testProxy), next, "pass_service"},
		{"v4 UDP to service", udp4(t, sb4, testService4, testDNS), next, "pass_service"},
		{"v4 spoofed source", tcp4(t, spoof4, testService4, testProxy), drop,
			"drop_spoofed_source"},
		{"v4 from 0.0.0.0", udp4(t, "0.0.0.0", "255.255.255.255", 67), drop,
			"drop_spoofed_source"},
		{"v4 elsewhere", tcp4(t, sb4, other4, 443), drop, "drop_not_service"},
		{"v4 TCP to host end", tcp4(t, sb4, host4, 22), drop, "drop_not_service"},
		{"v4 ping to host end", icmp4(t, sb4, host4, 8, 0), drop, "drop_not_service"},
		{"v4 port unreachable to host end", icmp4(t, sb4, host4, 3, 3), next,
			"pass_icmp_error"},
		{"v4 header length 12", badIHL, drop, "drop_malformed"},
		{"ARP from sandbox", arpRequest(t, sb4, host4), next, "pass_arp"},
		{"ARP probe", arpRequest(t, "0.0.0.0", sb4), next, "pass_arp"},
		{"ARP claiming another address", arpRequest(t, spoof4, host4), drop,
			"drop_spoofed_source"},
		{"ARP not for IPv4", badARP, drop, "drop_malformed"},
		{"v6 TCP to service", tcp6(t, sb6, testService6, testProxy), next, "pass_service"},
		{"v6 UDP to service", udp6(t, sb6, testService6, testDNS), next, "pass_service"},
		{"v6 spoofed source", tcp6(t, spoof6, testService6, testProxy), drop,
			"drop_spoofed_source"},
		{"v6 elsewhere", tcp6(t, sb6, other6, 443), drop, "drop_not_service"},
		{"v6 to v4 service mapped", tcp6(t, sb6, "::ffff:"+testService4, testProxy), drop,
			"drop_not_service"},
		{"v6 ping to host end", icmp6(t, sb6, host6, 128, 64), drop, "drop_not_service"},
		{"v6 port unreachable to host end", icmp6(t, sb6, host6, 1, 64), next,
			"pass_icmp_error"},
		{"NS from link-local", neighSolicit(t, "fe80::2", "ff02::1:ff00:1", host6, 255),
			next, "pass_nd"},
		{"NS for DAD", neighSolicit(t, "::", "ff02::1:ff00:2", sb6, 255), next, "pass_nd"},
		{"NS probing the gateway", neighSolicit(t, sb6, host6, host6, 255), next, "pass_nd"},
		{"NA to link-local", icmp6(t, "fe80::2", "fe80::1", 136, 255), next, "pass_nd"},
		{"RS", icmp6(t, "fe80::2", "ff02::2", 133, 255), next, "pass_nd"},
		{"NS to a global address", neighSolicit(t, sb6, other6, other6, 255), drop,
			"drop_not_service"},
		{"NS from a spoofed global", neighSolicit(t, spoof6, host6, host6, 255), drop,
			"drop_spoofed_source"},
		{"NS with hop limit 64", neighSolicit(t, "fe80::2", "ff02::1:ff00:1", host6, 64),
			drop, "drop_malformed"},
		{"RA", icmp6(t, "fe80::2", "ff02::1", 134, 255), drop, "drop_nd_router"},
		{"redirect", icmp6(t, "fe80::2", "fe80::1", 137, 255), drop, "drop_nd_router"},
		{"MLD report", icmp6(t, "fe80::2", "ff02::16", 143, 1), drop, "drop_link_local"},
		{"mDNS", udp6(t, "fe80::2", "ff02::fb", 5353), drop, "drop_link_local"},
		{"v6 EtherType, v4 header", badVersion, drop, "drop_malformed"},
		{"VLAN tagged", frame(t, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4},
			ip4(sb4, testService4, layers.IPProtocolUDP), udpTo(testDNS), payload),
			drop, "drop_other_ethertype"},
		{"LLDP", frame(t, rawEtherType(layers.EthernetTypeLinkLayerDiscovery),
			gopacket.Payload(make([]byte, 46))), drop, "drop_other_ethertype"},
	})

	if err := g.Detach(1); err != nil {
		t.Fatal(err)
	}
	runVerdicts(t, g.objs.KgGuardIngress, g.Counters, events, []verdictCase{
		{"unconfigured interface", tcp4(t, sb4, testService4, testProxy), drop,
			"drop_unknown_veth"},
	})
}
