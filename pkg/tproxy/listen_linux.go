//go:build linux

package tproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenTCP opens a transparent TCP listener on addr: it accepts
// connections handed to it whatever their destination, and each accepted
// connection's LocalAddr is the destination the client dialled. An IPv4
// address listens on IPv4 only, an IPv6 one on IPv6 only (v4-mapped
// addresses count as IPv4); addr may be a non-local address.
//
// The listener is plain TCP, not MPTCP (which Go's net package uses for
// listeners by default since Go 1.24): the kernel takes only TCP
// listeners into a sockmap, and accepts plain TCP clients on an MPTCP
// listener anyway.
func ListenTCP(addr netip.AddrPort) (*net.TCPListener, error) {
	addr, network := family(addr, "tcp")
	lc := net.ListenConfig{Control: control(addr.Addr().Is6(), false)}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("transparent listener: %w", err)
	}
	return ln.(*net.TCPListener), nil
}

// ListenUDP opens a transparent UDP socket on addr that reports each
// datagram's destination address (IP_PKTINFO, IPV6_RECVPKTINFO), so that
// a reply can be sent from it: pass the destination as the source of an
// IP_PKTINFO or IPV6_PKTINFO control message to WriteMsgUDP, as
// miekg/dns's Server does. The reply's source port is addr's port, so
// addr must have the port clients sent to (53 for DNS): a client that
// connected its socket to the server it queried (glibc, Go, gVisor's
// netstack) accepts nothing else.
func ListenUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	addr, network := family(addr, "udp")
	lc := net.ListenConfig{Control: control(addr.Addr().Is6(), true)}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("transparent UDP socket: %w", err)
	}
	return pc.(*net.UDPConn), nil
}

// family unmaps addr and names the network of its family: Go then makes
// an IPv6 socket IPv6-only (IPV6_V6ONLY).
func family(addr netip.AddrPort, proto string) (netip.AddrPort, string) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if addr.Addr().Is4() {
		return addr, proto + "4"
	}
	return addr, proto + "6"
}

// control returns a net.ListenConfig.Control that makes the socket
// transparent, and for UDP has it report destinations, before bind: a
// transparent socket may bind a non-local address.
func control(six, udp bool) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = setOptions(int(fd), six, udp) })
		return errors.Join(err, serr)
	}
}

func setOptions(fd int, six, udp bool) error {
	type option struct {
		level, name int
		what        string
	}
	opts := []option{{unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"}}
	if udp {
		opts = append(opts, option{unix.SOL_IP, unix.IP_PKTINFO, "IP_PKTINFO"})
	}
	if six {
		// The same flag as IP_TRANSPARENT, under its IPv6 name.
		opts = []option{{unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"}}
		if udp {
			opts = append(opts,
				option{unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO"})
		}
	}
	for _, o := range opts {
		if err := unix.SetsockoptInt(fd, o.level, o.name, 1); err != nil {
			// EPERM: IP_TRANSPARENT needs CAP_NET_ADMIN (or CAP_NET_RAW).
			return os.NewSyscallError("setsockopt "+o.what, err)
		}
	}
	return nil
}
