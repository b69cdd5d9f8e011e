//go:build linux

package tproxy

import (
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/testutil"
)

// sockopt reads an integer socket option of c.
func sockopt(t *testing.T, c syscall.Conn, level, name int) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	err = raw.Control(func(fd uintptr) { v, serr = unix.GetsockoptInt(int(fd), level, name) })
	if err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// TestListen checks that the sockets are transparent from before bind:
// they bind addresses the namespace does not have, which a plain socket
// cannot.
func TestListen(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	testutil.InNetNS(t, ns, func() {
		for _, addr := range []string{"198.51.100.1:8443", "[2001:db8::1]:8443",
			"[::ffff:198.51.100.1]:8444"} {
			ap := netip.MustParseAddrPort(addr)
			six := ap.Addr().Is6() && !ap.Addr().Is4In6()
			level, name := unix.SOL_IP, unix.IP_TRANSPARENT
			infoLevel, info := unix.SOL_IP, unix.IP_PKTINFO
			if six {
				level, name = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
				infoLevel, info = unix.SOL_IPV6, unix.IPV6_RECVPKTINFO
			}

			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				t.Fatalf("plain listener on %s: the namespace has the address", addr)
			}
			ln, err := ListenTCP(ap)
			if err != nil {
				t.Errorf("ListenTCP(%s): %v", addr, err)
				continue
			}
			if got := ln.Addr().(*net.TCPAddr).AddrPort(); got.Addr() != ap.Addr().Unmap() {
				t.Errorf("ListenTCP(%s) listens on %s", addr, got)
			}
			if sockopt(t, ln, level, name) != 1 {
				t.Errorf("ListenTCP(%s): not transparent", addr)
			}
			ln.Close()

			conn, err := ListenUDP(ap)
			if err != nil {
				t.Errorf("ListenUDP(%s): %v", addr, err)
				continue
			}
			if sockopt(t, conn, level, name) != 1 || sockopt(t, conn, infoLevel, info) != 1 {
				t.Errorf("ListenUDP(%s): not transparent, or no packet info", addr)
			}
			conn.Close()
		}
	})
}

// TestReplyFrom checks the other half of a transparent UDP socket: a
// reply whose packet-info source is an address the host does not have
// leaves from that address, as the resolver answers a query sent to
// another server. A plain socket may not do that.
func TestReplyFrom(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	for _, tc := range []struct {
		name, local, from string
		oob               func(src net.IP) []byte
	}{
		{"v4", "127.0.0.1:0", "198.51.100.53", func(src net.IP) []byte {
			return (&ipv4.ControlMessage{Src: src}).Marshal()
		}},
		{"v6", "[::1]:0", "2001:db8::53", func(src net.IP) []byte {
			return (&ipv6.ControlMessage{Src: src}).Marshal()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.InNetNS(t, ns, func() { replyFrom(t, tc.local, tc.from, tc.oob) })
		})
	}
}

func replyFrom(t *testing.T, local, from string, oob func(net.IP) []byte) {
	client, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ListenUDP(netip.MustParseAddrPort(local))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	plain, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	to := client.LocalAddr().(*net.UDPAddr)
	src := net.ParseIP(from)
	if _, _, err := plain.WriteMsgUDP([]byte("x"), oob(src), to); err == nil {
		t.Error("a plain socket sent from an address not its host's")
	}
	if _, _, err := server.WriteMsgUDP([]byte("answer"), oob(src), to); err != nil {
		t.Fatalf("send from %s: %v", from, err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, got, err := client.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:n]) != "answer" || got.Addr() != netip.MustParseAddr(from) {
		t.Errorf("received %q from %s, want \"answer\" from %s", buf[:n], got, from)
	}
}
