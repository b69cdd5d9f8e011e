package bpf

import (
	"net/netip"
	"time"
)

// DenyEvent is one refusal by keygate's programs that no user space would
// otherwise learn of: a connect() or sendmsg() the socket hooks failed
// with EPERM, or a packet the cgroup_skb filter, the veth guard or the
// steering program dropped. Read them with an EventReader.
type DenyEvent struct {
	// Time is when the program refused, by the wall clock as it stood
	// when the EventReader was made: a later step of the wall clock (not
	// NTP's gradual slewing) is not reflected.
	Time time.Time

	// CgroupID is the cgroup of the refused socket (see CgroupID): for the
	// socket hooks the calling process's, for cgroup_skb that of the
	// packet's socket. Zero for the veth programs, which see no sockets.
	CgroupID uint64

	// Ifindex is the host end of the veth the frame arrived on, in the
	// network namespace the Guard attached in. Zero for the cgroup
	// programs.
	Ifindex int

	// Reason is the counter the refusal was counted under, such as
	// "deny_udp", "skb_drop_v4", "drop_spoofed_source" or
	// "steer_drop_udp": a key of CgroupCapture.Counters, Guard.Counters or
	// Guard.SteerCounters.
	Reason string

	// Proto is the IP protocol of the socket or packet: "tcp", "udp",
	// "icmp", "icmpv6" and the like, its number in decimal where it has no
	// name here, or "raw" for a socket protocol with no IP number
	// (MPTCP). For IPv6 behind extension headers it is the first header's
	// ("hopopt", "ipv6-frag", ...). "arp" for an ARP frame; "" for a frame
	// that is neither, or whose header could not be read.
	Proto string

	// Src and Dst are the packet's source and destination, or the
	// socket's own address and the one it asked for; the socket's is
	// unspecified until it is bound. A v4-mapped address is reported as
	// IPv4, and an ARP frame's sender and target addresses with port 0.
	// Ports are 0 for protocols without (ICMP), and where the transport
	// header is not at hand: IPv4 fragments after the first, IPv6 behind
	// extension headers, truncated packets. Both are zero (invalid) when
	// Proto is "".
	Src, Dst netip.AddrPort
}
