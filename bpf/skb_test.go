//go:build linux

package bpf

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/keygate/keygate/internal/testutil"
)

// The service addresses the tests compile into the programs.
const (
	testService4 = "10.239.0.1"
	testService6 = "fd6b:6761:7499::1"
	testProxy    = 15001
	testDNS      = 15053
)

var testCgroupConfig = CgroupConfig{
	Proxy:     netip.AddrPortFrom(netip.MustParseAddr(testService4), testProxy),
	Resolver:  netip.AddrPortFrom(netip.MustParseAddr(testService4), testDNS),
	Proxy6:    netip.AddrPortFrom(netip.MustParseAddr(testService6), testProxy),
	Resolver6: netip.AddrPortFrom(netip.MustParseAddr(testService6), testDNS),
}

// verdictCase is one BPF_PROG_TEST_RUN input and what must come of it.
type verdictCase struct {
	name   string
	data   []byte
	want   uint32 // program return value
	reason string // the one counter that must go up by one
}

// runVerdicts runs prog on each case and checks its return value, that
// exactly the case's counter went up, by one, and that events, the reader
// of prog's deny events, got one for the case's reason if it is reported
// and none otherwise.
func runVerdicts(t *testing.T, prog *ebpf.Program, counters func() (map[string]uint64, error),
	events *EventReader, cases []verdictCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := mustCounters(t, counters)
			ret, err := prog.Run(&ebpf.RunOptions{Data: tc.data})
			if err != nil {
				t.Fatalf("test run: %v", err)
			}
			if ret != tc.want {
				t.Errorf("verdict = %#x, want %#x", ret, tc.want)
			}
			evs := drainEvents(t, events)
			if n := len(evs); reported(tc.reason) && (n != 1 || evs[0].Reason != tc.reason) {
				t.Errorf("deny events %+v, want one for %s", evs, tc.reason)
			} else if !reported(tc.reason) && n != 0 {
				t.Errorf("deny events %+v, want none", evs)
			}
			after := mustCounters(t, counters)
			for name, n := range after {
				want := before[name]
				if name == tc.reason {
					want++
				}
				if n != want {
					t.Errorf("counter %s = %d, want %d", name, n, want)
				}
			}
			if _, ok := after[tc.reason]; !ok {
				t.Errorf("no counter %q", tc.reason)
			}
		})
	}
}

func mustCounters(t *testing.T, counters func() (map[string]uint64, error)) map[string]uint64 {
	t.Helper()
	m, err := counters()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSkbEgress runs the cgroup_skb filter on hand-built packets. The
// kernel's test run for cgroup_skb takes an Ethernet frame, sets
// skb->protocol from it and strips it, so the program sees the packet from
// its IP header on, as it does when attached.
func TestSkbEgress(t *testing.T) {
	testutil.RequireRoot(t)
	c, err := LoadCgroup(testCgroupConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	const pass, drop = 1, 0
	const sb4, sb6 = "10.239.1.2", "fd6b:6761:7499:1::2"
	const other4, other6 = "198.51.100.7", "2001:db8::7"

	fragment := ip4(sb4, testService4, layers.IPProtocolUDP)
	fragment.FragOffset = 8
	hopByHop := ip6(sb6, testService6, layers.IPProtocolIPv6HopByHop)

	runVerdicts(t, c.objs.KgSkbEgress, c.Counters, mustDenyEvents(t, c.DenyEvents), []verdictCase{
		{"v4 TCP to proxy", tcp4(t, sb4, testService4, testProxy), pass, "skb_pass_service"},
		{"v4 UDP to resolver", udp4(t, sb4, testService4, testDNS), pass, "skb_pass_service"},
		{"v4 TCP to resolver", tcp4(t, sb4, testService4, testDNS), pass, "skb_pass_service"},
		{"v4 loopback", udp4(t, "127.0.0.1", "127.0.0.53", 53), pass, "skb_pass_loopback"},
		{"v4 UDP to proxy port", udp4(t, sb4, testService4, testProxy), drop, "skb_drop_v4"},
		{"v4 TCP to service, other port", tcp4(t, sb4, testService4, 22), drop, "skb_drop_v4"},
		{"v4 TCP elsewhere", tcp4(t, sb4, other4, 443), drop, "skb_drop_v4"},
		{"v4 UDP DNS elsewhere", udp4(t, sb4, other4, 53), drop, "skb_drop_v4"},
		{"v4 ICMP to service", icmp4(t, sb4, testService4, 8, 0), drop, "skb_drop_v4"},
		{"v4 later fragment to resolver", frame(t, fragment, payload), drop, "skb_drop_v4"},
		{"v6 TCP to proxy", tcp6(t, sb6, testService6, testProxy), pass, "skb_pass_service"},
		{"v6 UDP to resolver", udp6(t, sb6, testService6, testDNS), pass, "skb_pass_service"},
		{"v6 loopback", tcp6(t, "::1", "::1", 8080), pass, "skb_pass_loopback"},
		{"v6 neighbour solicitation",
			neighSolicit(t, "fe80::2", "ff02::1:ff00:1", "fe80::1", 255), pass, "skb_pass_nd"},
		{"v6 ND with hop limit 64",
			neighSolicit(t, "fe80::2", "ff02::1:ff00:1", "fe80::1", 64), drop, "skb_drop_v6"},
		{"v6 ND to a global address",
			neighSolicit(t, sb6, other6, other6, 255), drop, "skb_drop_v6"},
		{"v6 TCP elsewhere", tcp6(t, sb6, other6, 443), drop, "skb_drop_v6"},
		{"v6 UDP to proxy port", udp6(t, sb6, testService6, testProxy), drop, "skb_drop_v6"},
		{"v6 ICMPv6 echo to service", icmp6(t, sb6, testService6, 128, 64), drop, "skb_drop_v6"},
		{"v6 extension header to proxy", frame(t, hopByHop,
			gopacket.Payload{byte(layers.IPProtocolTCP), 0, 1, 4, 0, 0, 0, 0},
			tcpTo(testProxy)), drop, "skb_drop_v6"},
		{"v4-mapped destination", tcp6(t, sb6, "::ffff:"+testService4, testProxy),
			drop, "skb_drop_v6"},
		{"ARP", arpRequest(t, sb4, "10.239.1.1"), drop, "skb_drop_other_proto"},
	})
}
