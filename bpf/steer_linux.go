//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// steerPinPrefix starts the file name of each steering link in PinDir.
const steerPinPrefix = "steer-"

// steerLocked makes sure the current steering program is attached to
// ifindex, in front of its guard.
func (g *Guard) steerLocked(ifindex int) error {
	if l, ok := g.steers[ifindex]; ok {
		if tcxIfindex(l) == ifindex {
			if err := l.Update(g.objs.KgSteerIngress); err != nil {
				return fmt.Errorf("update steering on interface %d: %w", ifindex, err)
			}
			return nil
		}
		destroyLink(l)
		delete(g.steers, ifindex)
	}

	// Right before the guard rather than at the head: a program someone
	// put first on purpose stays first.
	l, err := g.attachLocked(ifindex, steerPinPrefix, g.steers, link.TCXOptions{
		Program: g.objs.KgSteerIngress,
		Anchor:  link.BeforeLink(g.links[ifindex]),
	})
	if err != nil {
		return err
	}
	g.steers[ifindex] = l
	return nil
}

// unsteerLocked detaches the steering program from ifindex, if attached.
func (g *Guard) unsteerLocked(ifindex int) error {
	l, ok := g.steers[ifindex]
	if !ok {
		return nil
	}
	delete(g.steers, ifindex)
	if err := destroyLink(l); err != nil {
		return fmt.Errorf("detach steering from interface %d: %w", ifindex, err)
	}
	return nil
}

// steerSlot is one entry of steer_sockets as SetSteerSockets fills it.
type steerSlot struct {
	key    guardSteerSocket
	name   string
	conn   syscall.Conn // nil: empty the slot
	family int          // AF_INET or AF_INET6
	sotype int          // SOCK_STREAM (a listener) or SOCK_DGRAM
}

// SetSteerSockets hands the tc capture mode the agent's transparent
// sockets, replacing those set before: every packet the steering programs
// assign from then on goes to these. The kernel keeps its own reference
// to each socket only while the socket is open; after a restart the next
// agent must call SetSteerSockets with its own sockets. On error, the
// slots before the failing one are already set.
func (g *Guard) SetSteerSockets(s SteerSockets) error {
	for _, slot := range []steerSlot{
		{guardSteerSocketSOCK_PROXY4, "proxy IPv4", tcpConn(s.Proxy4), unix.AF_INET,
			unix.SOCK_STREAM},
		{guardSteerSocketSOCK_PROXY6, "proxy IPv6", tcpConn(s.Proxy6), unix.AF_INET6,
			unix.SOCK_STREAM},
		{guardSteerSocketSOCK_DNS_TCP4, "resolver TCP IPv4", tcpConn(s.DNSTCP4), unix.AF_INET,
			unix.SOCK_STREAM},
		{guardSteerSocketSOCK_DNS_TCP6, "resolver TCP IPv6", tcpConn(s.DNSTCP6), unix.AF_INET6,
			unix.SOCK_STREAM},
		{guardSteerSocketSOCK_DNS_UDP4, "resolver UDP IPv4", udpConn(s.DNSUDP4), unix.AF_INET,
			unix.SOCK_DGRAM},
		{guardSteerSocketSOCK_DNS_UDP6, "resolver UDP IPv6", udpConn(s.DNSUDP6), unix.AF_INET6,
			unix.SOCK_DGRAM},
	} {
		if err := g.setSlot(slot); err != nil {
			return err
		}
	}
	return nil
}

// tcpConn and udpConn keep a nil socket nil as a syscall.Conn.
func tcpConn(l *net.TCPListener) syscall.Conn {
	if l == nil {
		return nil
	}
	return l
}

func udpConn(c *net.UDPConn) syscall.Conn {
	if c == nil {
		return nil
	}
	return c
}

func (g *Guard) setSlot(s steerSlot) error {
	key := uint32(s.key)
	if s.conn == nil {
		// An empty sockmap slot reports EINVAL, not ENOENT (see
		// __sock_map_delete in net/core/sock_map.c); key is in range.
		err := g.objs.SteerSockets.Delete(key)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("clear %s socket: %w", s.name, err)
		}
		return nil
	}

	raw, err := s.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("%s socket: %w", s.name, err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if serr = checkSteerSocket(int(fd), s.family, s.sotype); serr != nil {
			return
		}
		// The map takes the socket, not the descriptor: the entry lives
		// as long as the socket, wherever its descriptors go.
		serr = g.objs.SteerSockets.Update(key, uint64(fd), ebpf.UpdateAny)
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("%s socket: %w", s.name, kernelErr(err))
	}
	return nil
}

// checkSteerSocket checks that fd is a socket the steering program can
// hand packets of family and sotype to, and that it can answer them from
// their original destination. The kernel itself would take a socket of
// the wrong family or a plain one, and the sandbox's connections would
// then hang without a word.
func checkSteerSocket(fd, family, sotype int) error {
	opt := func(level, name int, what string) (int, error) {
		v, err := unix.GetsockoptInt(fd, level, name)
		if err != nil {
			return 0, fmt.Errorf("getsockopt %s: %w", what, err)
		}
		return v, nil
	}
	if v, err := opt(unix.SOL_SOCKET, unix.SO_DOMAIN, "SO_DOMAIN"); err != nil {
		return err
	} else if v != family {
		return fmt.Errorf("address family %d, want %d", v, family)
	}
	if v, err := opt(unix.SOL_SOCKET, unix.SO_TYPE, "SO_TYPE"); err != nil {
		return err
	} else if v != sotype {
		return fmt.Errorf("socket type %d, want %d", v, sotype)
	}
	// Go makes listeners MPTCP by default (Go 1.24), and a sockmap takes
	// no MPTCP socket (EOPNOTSUPP).
	proto := unix.IPPROTO_TCP
	if sotype == unix.SOCK_DGRAM {
		proto = unix.IPPROTO_UDP
	}
	if v, err := opt(unix.SOL_SOCKET, unix.SO_PROTOCOL, "SO_PROTOCOL"); err != nil {
		return err
	} else if v != proto {
		return fmt.Errorf("protocol %d, want %d (an MPTCP listener? see pkg/tproxy)", v, proto)
	}
	if sotype == unix.SOCK_STREAM {
		if v, err := opt(unix.SOL_SOCKET, unix.SO_ACCEPTCONN, "SO_ACCEPTCONN"); err != nil {
			return err
		} else if v == 0 {
			return errors.New("not listening")
		}
	} else if err := checkDNSPort(fd); err != nil {
		return err
	}

	level, name, what := unix.SOL_IP, unix.IP_TRANSPARENT, "IP_TRANSPARENT"
	if family == unix.AF_INET6 {
		level, name, what = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, "IPV6_TRANSPARENT"
	}
	if v, err := opt(level, name, what); err != nil {
		return err
	} else if v == 0 {
		return fmt.Errorf("not transparent: set %s before bind (see pkg/tproxy)", what)
	}
	return nil
}

// checkDNSPort checks that the UDP socket fd is bound to port 53. A
// transparent socket can answer from the address a query was sent to (the
// source of an IP_PKTINFO control message), but only from its own port,
// and the sandbox's resolver, which asked port 53, takes nothing else: a
// connected socket never sees the answer, and the sandbox's kernel sends
// back a port unreachable instead.
func checkDNSPort(fd int) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	port := 0
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		port = sa.Port
	case *unix.SockaddrInet6:
		port = sa.Port
	}
	if port != dnsPort {
		return fmt.Errorf("bound to port %d: answers must come from port %d", port, dnsPort)
	}
	return nil
}

// dnsPort is the port the steering program sends to the resolver, and so
// the port its answers must come from.
const dnsPort = 53

// SteerCounters returns how often the steering program exited for each
// reason, summed over CPUs and over all veths it runs on.
func (g *Guard) SteerCounters() (map[string]uint64, error) {
	return readCounters(g.objs.SteerCounters, steerReasonNames[:])
}
