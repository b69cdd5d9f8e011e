package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// CgroupConfig says where the cgroup programs send captured traffic and
// where they keep their state.
type CgroupConfig struct {
	Proxy    netip.AddrPort // the proxy's transparent listener (IPv4)
	Resolver netip.AddrPort // the resolver (IPv4, UDP and TCP)

	// Proxy6 and Resolver6 are the same services' IPv6 addresses, set both
	// or neither. When zero, connect and sendmsg to IPv6 destinations are
	// refused (EPERM), except ::1 and v4-mapped addresses, which go to the
	// IPv4 services.
	Proxy6    netip.AddrPort
	Resolver6 netip.AddrPort

	// PinDir is a directory on a BPF filesystem, such as
	// /sys/fs/bpf/keygate/<instance>, where the live maps and the cgroup
	// links are pinned, so capture stays in force while no agent runs. ""
	// pins nothing, and Close detaches the programs.
	PinDir string
}

func (c CgroupConfig) validate() error {
	if err := validService(c.Proxy, false); err != nil {
		return fmt.Errorf("proxy address: %w", err)
	}
	if err := validService(c.Resolver, false); err != nil {
		return fmt.Errorf("resolver address: %w", err)
	}
	if c.Proxy6.IsValid() != c.Resolver6.IsValid() {
		return errors.New("IPv6 capture needs both Proxy6 and Resolver6")
	}
	if !c.Proxy6.IsValid() {
		return nil
	}
	if err := validService(c.Proxy6, true); err != nil {
		return fmt.Errorf("proxy IPv6 address: %w", err)
	}
	if err := validService(c.Resolver6, true); err != nil {
		return fmt.Errorf("resolver IPv6 address: %w", err)
	}
	return nil
}

// validService checks that ap is a usable service address of the family
// asked for: not unspecified, not v4-mapped, with a port.
func validService(ap netip.AddrPort, six bool) error {
	a := ap.Addr()
	ok := a.IsValid() && !a.IsUnspecified() && ap.Port() != 0
	if six {
		ok = ok && a.Is6() && !a.Is4In6()
	} else {
		ok = ok && a.Is4()
	}
	if !ok {
		family := "IPv4"
		if six {
			family = "IPv6"
		}
		return fmt.Errorf("%s: need an %s address and port", ap, family)
	}
	return nil
}

// ErrNotSupported is returned where keygate's eBPF programs cannot run: on
// systems other than Linux, or on a kernel that lacks a feature they need.
var ErrNotSupported = errors.New("eBPF capture not supported")

// OrigDst is where a captured connection was going before it was redirected.
type OrigDst struct {
	Dst      netip.AddrPort // IPv4 or IPv6; a v4-mapped destination is reported as IPv4
	CgroupID uint64         // cgroup of the process that called connect()
}

// ErrUnknownConn is returned by TakeConn when no destination was recorded.
var ErrUnknownConn = errors.New("no original destination recorded")

// GuardConfig says what the veth guards let through and where they keep
// their state.
type GuardConfig struct {
	// Service4 and Service6 are the agent's service addresses (the proxy's
	// and the resolver's). Sandbox packets to any other address are
	// dropped. A zero address lets nothing of that family through.
	Service4 netip.Addr
	Service6 netip.Addr

	// PinDir is a directory on a BPF filesystem where the guard's maps and
	// its tcx links (one per veth, named guard-<ifname>) are pinned, so the
	// guards stay in force while no agent runs. It may be the cgroup
	// capture's PinDir. "" pins nothing, and Close detaches the guards.
	PinDir string
}

func (c GuardConfig) validate() error {
	if !c.Service4.IsValid() && !c.Service6.IsValid() {
		return errors.New("guard needs a service address")
	}
	if c.Service4.IsValid() && (!c.Service4.Is4() || c.Service4.IsUnspecified()) {
		return fmt.Errorf("service address %s: not a usable IPv4 address", c.Service4)
	}
	if c.Service6.IsValid() && (!c.Service6.Is6() || c.Service6.Is4In6() ||
		c.Service6.IsUnspecified()) {
		return fmt.Errorf("service address %s: not a usable IPv6 address", c.Service6)
	}
	return nil
}

// GuardVeth describes one guarded veth by the addresses on its two ends.
type GuardVeth struct {
	// Sandbox4 and Sandbox6 are the sandbox end's addresses, the only
	// sources its packets may carry. Zero: nothing of that family passes
	// except IPv6 neighbour discovery.
	Sandbox4 netip.Addr
	Sandbox6 netip.Addr

	// Host4 and Host6 are the host end's own addresses. The sandbox may
	// send them ICMP errors, and Host6 its neighbour discovery probes (it
	// is the sandbox's IPv6 gateway). Zero: none.
	Host4 netip.Addr
	Host6 netip.Addr

	// Mode is how the sandbox's traffic is captured. Zero is
	// CaptureCgroup: the veth is only guarded. CaptureTC also attaches
	// the steering program, which hands the sandbox's TCP and DNS to the
	// sockets set with Guard.SetSteerSockets.
	Mode CaptureMode
}

func (v GuardVeth) validate() error {
	switch v.Mode {
	case CaptureCgroup:
	case CaptureTC:
		if !v.Sandbox4.IsValid() && !v.Sandbox6.IsValid() {
			return errors.New("tc capture needs a sandbox address")
		}
	default:
		return fmt.Errorf("capture mode %d: unknown", v.Mode)
	}
	for _, a := range []netip.Addr{v.Sandbox4, v.Host4} {
		if a.IsValid() && (!a.Is4() || a.IsUnspecified()) {
			return fmt.Errorf("%s: not a usable IPv4 address", a)
		}
	}
	for _, a := range []netip.Addr{v.Sandbox6, v.Host6} {
		if a.IsValid() && (!a.Is6() || a.Is4In6() || a.IsUnspecified()) {
			return fmt.Errorf("%s: not a usable IPv6 address", a)
		}
	}
	return nil
}

// CaptureMode says how a sandbox's traffic reaches the agent.
type CaptureMode uint8

const (
	// CaptureCgroup captures at the sockets, with the cgroup programs of
	// LoadCgroup: native processes, runsc with --network=host.
	CaptureCgroup CaptureMode = iota

	// CaptureTC captures at the host end of the veth, for sandboxes whose
	// sockets the host kernel does not see (runsc's netstack, a VM): the
	// steering program assigns the sandbox's TCP and DNS packets to the
	// agent's transparent sockets, and the original destination is the
	// accepted socket's local address.
	CaptureTC
)

func (m CaptureMode) String() string {
	switch m {
	case CaptureCgroup:
		return "cgroup"
	case CaptureTC:
		return "tc"
	}
	return fmt.Sprintf("CaptureMode(%d)", uint8(m))
}

// SteerMark is the firewall mark the steering program puts on the packets
// it assigns to a socket. Policy routing must deliver packets with this
// mark locally whatever their destination (tproxy.Install(SteerMark,
// table)); without it the stack drops them. The value spells "KG".
const SteerMark = 0x4b47

// SteerTable is a routing table number for that policy routing: the same
// as SteerMark, for recognisability. An agent that shares its host with
// another should pick a table of its own (see tproxy.Install).
const SteerTable = 0x4b47

// SteerSockets are the agent's sockets that the tc capture mode hands
// sandbox traffic to. Each must be transparent (IP_TRANSPARENT or
// IPV6_TRANSPARENT, as pkg/tproxy makes them) so that it can answer from
// the address the sandbox dialled, plain TCP or UDP (not MPTCP), and of
// the family its name says: a listener for the TCP ones, a bound UDP
// socket for the UDP ones. A nil socket leaves its slot empty, and the
// steering program drops what would go there (steer_no_listener). The
// kernel empties a slot when its socket closes.
type SteerSockets struct {
	Proxy4, Proxy6   *net.TCPListener // the proxy, for TCP to any port but 53
	DNSTCP4, DNSTCP6 *net.TCPListener // the resolver, for TCP to port 53; any port

	// DNSUDP4 and DNSUDP6 are the resolver's UDP sockets, for UDP to port
	// 53. They must be bound to port 53 (on any address, the service
	// address say): a UDP answer can be sent from the address a query
	// went to, but only from the socket's own port, and the sandbox takes
	// answers only from port 53. Such a socket also serves cgroup-mode
	// sandboxes if CgroupConfig.Resolver has port 53.
	DNSUDP4, DNSUDP6 *net.UDPConn
}
