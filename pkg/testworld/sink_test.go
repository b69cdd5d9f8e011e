package testworld

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testUDPSink(t *testing.T, w *World) {
	tests := []struct {
		name string
		dst  netip.AddrPort
		src  netip.Addr
	}{
		{"ipv4", netip.AddrPortFrom(w.Attacker, 9999), w.HostIP},
		{"ipv6", netip.AddrPortFrom(w.Attacker6, 9999), w.HostIP6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := []byte("udp-secret-91ab-" + tt.name)
			send(t, "udp", tt.dst, payload)

			waitFor(t, func() bool { return w.Received(payload) })
			d := findDatagram(w, payload)
			if d.Network != "udp" || d.Dst != tt.dst || d.Src.Addr() != tt.src {
				t.Errorf("datagram %+v, want udp to %s from %s", d, tt.dst, tt.src)
			}
		})
	}
}

func testTCPSink(t *testing.T, w *World) {
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(w.Attacker, 9999),
		netip.AddrPortFrom(w.Attacker6, 9999),
	} {
		t.Run(dst.String(), func(t *testing.T) {
			conn, err := net.Dial("tcp", dst.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			suffix := "e3f0"
			if dst.Addr().Is6() {
				suffix = "e3f6"
			}
			for _, part := range []string{"tcp-se", "cret-", suffix} {
				if _, err := conn.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
			}

			payload := []byte("tcp-secret-" + suffix)
			waitFor(t, func() bool { return w.Received(payload) })
			if d := findDatagram(w, payload); d.Network != "tcp" || d.Dst != dst {
				t.Errorf("stream %+v, want tcp to %s", d, dst)
			}
		})
	}
}

// testStrayDNS sends a DNS query to the stray server over UDP and over TCP,
// and checks that the sink recorded the packet and that the world's own DNS
// server never saw it.
func testStrayDNS(t *testing.T, w *World) {
	dst := netip.AddrPortFrom(w.StrayDNS, 53)
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			qname := "stray-" + network + "-5c1d." + w.Zone
			msg := new(dns.Msg)
			msg.SetQuestion(dns.Fqdn(qname), dns.TypeA)
			packet, err := msg.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if network == "tcp" {
				// DNS over TCP puts a two-byte length before each message.
				packet = append(binary.BigEndian.AppendUint16(nil, uint16(len(packet))), packet...)
			}
			send(t, network, dst, packet)

			waitFor(t, func() bool { return findDatagram(w, packet).Network != "" })
			d := findDatagram(w, packet)
			if d.Network != network || d.Dst != dst || d.Src.Addr() != w.HostIP {
				t.Errorf("recorded %+v, want %s to %s from %s", d, network, dst, w.HostIP)
			}
			for _, q := range w.DNSQueries() {
				if q.Name == qname {
					t.Errorf("world DNS server saw the stray query %+v", q)
				}
			}
		})
	}
}

// send writes payload to dst over network and closes the connection.
func send(t *testing.T, network string, dst netip.AddrPort, payload []byte) {
	t.Helper()
	conn, err := net.DialTimeout(network, dst.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
}

func findDatagram(w *World, payload []byte) Datagram {
	for _, d := range w.Datagrams() {
		if bytes.Equal(d.Payload, payload) {
			return d
		}
	}
	return Datagram{}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
