//go:build linux

package bpf

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Hand-built frames for BPF_PROG_TEST_RUN. The addresses are the test
// ranges this package owns: 10.239.0.0/16 and fd6b:6761:7499::/48.
var (
	sandboxMAC = net.HardwareAddr{0x02, 0x6b, 0x67, 0x00, 0x00, 0x02}
	hostMAC    = net.HardwareAddr{0x02, 0x6b, 0x67, 0x00, 0x00, 0x01}
)

// frame serializes an Ethernet frame carrying ls, filling in lengths and
// checksums. The EtherType follows the first layer.
func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: sandboxMAC, DstMAC: hostMAC}
	switch l := ls[0].(type) {
	case *layers.IPv4:
		eth.EthernetType = layers.EthernetTypeIPv4
	case *layers.IPv6:
		eth.EthernetType = layers.EthernetTypeIPv6
	case *layers.ARP:
		eth.EthernetType = layers.EthernetTypeARP
	case *layers.Dot1Q:
		eth.EthernetType = layers.EthernetTypeDot1Q
	case rawEtherType:
		eth.EthernetType = layers.EthernetType(l)
		ls = ls[1:]
	}
	var network gopacket.NetworkLayer
	for _, l := range ls {
		if nl, ok := l.(gopacket.NetworkLayer); ok && network == nil {
			network = nl
		}
		if tl, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok && network != nil {
			if err := tl.SetNetworkLayerForChecksum(network); err != nil {
				t.Fatal(err)
			}
		}
	}

	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	all := append([]gopacket.SerializableLayer{eth}, ls...)
	if err := gopacket.SerializeLayers(buf, opts, all...); err != nil {
		t.Fatalf("serialize frame: %v", err)
	}
	return buf.Bytes()
}

// rawEtherType, as the first layer given to frame, sets the EtherType of a
// frame whose payload follows as further layers.
type rawEtherType layers.EthernetType

func (rawEtherType) SerializeTo(gopacket.SerializeBuffer, gopacket.SerializeOptions) error {
	return nil
}

func (rawEtherType) LayerType() gopacket.LayerType { return gopacket.LayerTypePayload }

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Protocol: proto,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(),
	}
}

func ip6(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, HopLimit: 64, NextHeader: next,
		SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst),
	}
}

func tcpTo(port uint16) *layers.TCP {
	return &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), SYN: true, Window: 1024}
}

func udpTo(port uint16) *layers.UDP {
	return &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
}

var payload = gopacket.Payload("keygate")

// tcp4 is a TCP SYN from src to dst:port.
func tcp4(t *testing.T, src, dst string, port uint16) []byte {
	return frame(t, ip4(src, dst, layers.IPProtocolTCP), tcpTo(port))
}

func udp4(t *testing.T, src, dst string, port uint16) []byte {
	return frame(t, ip4(src, dst, layers.IPProtocolUDP), udpTo(port), payload)
}

func tcp6(t *testing.T, src, dst string, port uint16) []byte {
	return frame(t, ip6(src, dst, layers.IPProtocolTCP), tcpTo(port))
}

func udp6(t *testing.T, src, dst string, port uint16) []byte {
	return frame(t, ip6(src, dst, layers.IPProtocolUDP), udpTo(port), payload)
}

// icmp4 is an ICMP message of type and code from src to dst.
func icmp4(t *testing.T, src, dst string, typ, code uint8) []byte {
	return frame(t, ip4(src, dst, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, payload)
}

// icmp6 is an ICMPv6 message of type from src to dst with the given hop
// limit, its body 20 bytes of zeroes (room for an ND target address).
func icmp6(t *testing.T, src, dst string, typ uint8, hops uint8) []byte {
	ip := ip6(src, dst, layers.IPProtocolICMPv6)
	ip.HopLimit = hops
	return frame(t, ip, &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)},
		gopacket.Payload(make([]byte, 20)))
}

// neighSolicit is a neighbour solicitation for target, hop limit hops.
func neighSolicit(t *testing.T, src, dst, target string, hops uint8) []byte {
	ip := ip6(src, dst, layers.IPProtocolICMPv6)
	ip.HopLimit = hops
	return frame(t, ip,
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(
			layers.ICMPv6TypeNeighborSolicitation, 0)},
		&layers.ICMPv6NeighborSolicitation{TargetAddress: net.ParseIP(target)})
}

// arpRequest asks for target's hardware address on behalf of sender.
func arpRequest(t *testing.T, sender, target string) []byte {
	return frame(t, &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: sandboxMAC, SourceProtAddress: net.ParseIP(sender).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(target).To4(),
	})
}
