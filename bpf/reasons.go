//go:build linux

package bpf

// reasonNames names the exit reasons the cgroup programs count, the keys
// of CgroupCapture.Counters, indexed by enum reason in cgroup.c. Names are
// stable: dashboards and alerts use them.
var reasonNames = [...]string{
	// connect4 sent a TCP connection to the proxy.
	cgroupReasonREASON_TCP_REDIRECT: "tcp_redirect",
	// connect4 or sendmsg4 sent DNS (port 53, TCP or UDP) to the resolver.
	cgroupReasonREASON_DNS_REDIRECT: "dns_redirect",
	// connect4 or sendmsg4 left a 127.0.0.0/8 destination alone.
	cgroupReasonREASON_LOOPBACK: "loopback",
	// connect4 or sendmsg4 refused non-DNS UDP (QUIC included).
	cgroupReasonREASON_DENY_UDP: "deny_udp",
	// connect4 refused another kind of socket (ping, MPTCP, ...).
	cgroupReasonREASON_DENY_OTHER: "deny_other",
	// recvmsg4 made a resolver reply appear to come from the server asked.
	cgroupReasonREASON_DNS_REPLY: "dns_reply",
	// sockops published a redirected connection for TakeConn.
	cgroupReasonREASON_CONN_PUBLISHED: "conn_published",
	// sockops saw a TCP connect with no recorded destination (loopback,
	// or a socket that connected before the programs were attached).
	cgroupReasonREASON_CONN_UNKNOWN: "conn_unknown",
	// connect6 sent a TCP connection to the proxy (IPv6 or v4-mapped).
	cgroupReasonREASON_TCP_REDIRECT6: "tcp_redirect6",
	// connect6 or sendmsg6 sent DNS to the resolver.
	cgroupReasonREASON_DNS_REDIRECT6: "dns_redirect6",
	// connect6 or sendmsg6 left ::1 or ::ffff:127.0.0.0/104 alone.
	cgroupReasonREASON_LOOPBACK6: "loopback6",
	// connect6 or sendmsg6 refused non-DNS UDP.
	cgroupReasonREASON_DENY_UDP6: "deny_udp6",
	// connect6 refused another kind of socket.
	cgroupReasonREASON_DENY_OTHER6: "deny_other6",
	// connect6 or sendmsg6 refused an IPv6 destination: no IPv6 service.
	cgroupReasonREASON_DENY_NO_IP6: "deny_no_ip6",
	// recvmsg6 made a resolver reply appear to come from the server asked.
	cgroupReasonREASON_DNS_REPLY6: "dns_reply6",
	// getpeername4/6 reported the dialled address instead of a service's.
	cgroupReasonREASON_PEER_RESTORED: "peer_restored",
	// sock_release forgot a closed socket's original destination.
	cgroupReasonREASON_SOCK_FORGOTTEN: "sock_forgotten",
	// cgroup_skb passed a packet to the proxy's or resolver's address and
	// port: captured traffic.
	cgroupReasonREASON_SKB_PASS_SERVICE: "skb_pass_service",
	// cgroup_skb passed a packet to 127.0.0.0/8 or ::1, which stays in the
	// sandbox's own network namespace.
	cgroupReasonREASON_SKB_PASS_LOOPBACK: "skb_pass_loopback",
	// cgroup_skb passed IPv6 neighbour discovery to a link-local address.
	cgroupReasonREASON_SKB_PASS_ND: "skb_pass_nd",
	// cgroup_skb dropped an IPv4 packet to anywhere else: something got
	// past the socket hooks (a raw socket, say).
	cgroupReasonREASON_SKB_DROP_V4: "skb_drop_v4",
	// cgroup_skb dropped an IPv6 packet to anywhere else.
	cgroupReasonREASON_SKB_DROP_V6: "skb_drop_v6",
	// cgroup_skb dropped a packet that is neither IPv4 nor IPv6.
	cgroupReasonREASON_SKB_DROP_OTHER_PROTO: "skb_drop_other_proto",
	// Not an exit: a refusal or drop went unreported because the ring of
	// DenyEvents was full (counted besides its own reason).
	cgroupReasonREASON_EVENT_LOST: "event_lost",
}

// guardReasonNames names the verdict reasons the veth guard counts, the
// keys of Guard.Counters, indexed by enum reason in guard.c. Names are
// stable.
var guardReasonNames = [...]string{
	// From the sandbox's own address to a service address.
	guardReasonREASON_PASS_SERVICE: "pass_service",
	// ARP from the sandbox's own IPv4 address, or a 0.0.0.0 probe.
	guardReasonREASON_PASS_ARP: "pass_arp",
	// IPv6 router or neighbour solicitation or neighbour advertisement,
	// hop limit 255, to a link-local or the host end's address.
	guardReasonREASON_PASS_ND: "pass_nd",
	// ICMP or ICMPv6 error from the sandbox's own address to the host end.
	guardReasonREASON_PASS_ICMP_ERROR: "pass_icmp_error",
	// Dropped: the source is not the sandbox's own address (or ARP claims
	// someone else's). The proxy tells sandboxes apart by source.
	guardReasonREASON_DROP_SPOOFED_SOURCE: "drop_spoofed_source",
	// Dropped: from the sandbox's address, but not to a service address.
	guardReasonREASON_DROP_NOT_SERVICE: "drop_not_service",
	// Dropped: neither ARP, IPv4 nor IPv6, or VLAN tagged.
	guardReasonREASON_DROP_OTHER_ETHERTYPE: "drop_other_ethertype",
	// Dropped: the guard runs on an interface it has no addresses for.
	guardReasonREASON_DROP_UNKNOWN_VETH: "drop_unknown_veth",
	// Dropped: truncated or inconsistent headers, or ND with a hop limit
	// other than 255.
	guardReasonREASON_DROP_MALFORMED: "drop_malformed",
	// Dropped: link-scope IPv6 other than neighbour discovery, such as MLD
	// reports and mDNS.
	guardReasonREASON_DROP_LINK_LOCAL: "drop_link_local",
	// Dropped: a router advertisement or redirect; a sandbox is never the
	// host's router.
	guardReasonREASON_DROP_ND_ROUTER: "drop_nd_router",
	// Not a verdict: a drop of the guard's or the steering program's went
	// unreported because the ring of DenyEvents was full (counted besides
	// its own reason).
	guardReasonREASON_EVENT_LOST: "event_lost",
}

// steerReasonNames names the exit reasons the steering program of the tc
// capture mode counts, the keys of Guard.SteerCounters, indexed by enum
// steer_reason in steer.h. Names are stable. "Given" means assigned to the
// socket, marked SteerMark and passed to the stack (TCX_PASS); "left to
// the guard" means passed on to the next program (TCX_NEXT).
var steerReasonNames = [...]string{
	// A SYN, given to the proxy's listener: a new connection.
	guardSteerReasonSTEER_TCP_NEW: "steer_tcp_new",
	// A TCP segment of a flow with a socket (the proxy's or resolver's
	// accepted connection, one in its handshake, or in TIME_WAIT), given
	// to that socket.
	guardSteerReasonSTEER_TCP_ESTABLISHED: "steer_tcp_established",
	// A TCP segment other than a SYN that belongs to no flow, given to the
	// listener for its port, which answers with a reset.
	guardSteerReasonSTEER_TCP_NO_FLOW: "steer_tcp_no_flow",
	// UDP to port 53, any address, given to the resolver's UDP socket.
	guardSteerReasonSTEER_DNS_UDP: "steer_dns_udp",
	// A SYN to port 53, any address, given to the resolver's TCP listener.
	guardSteerReasonSTEER_DNS_TCP: "steer_dns_tcp",
	// Left to the guard: the veth is not (or no longer) in tc mode, or
	// not configured at all.
	guardSteerReasonSTEER_NEXT_CGROUP_MODE: "steer_next_cgroup_mode",
	// Left to the guard: ARP, another EtherType, or VLAN tagged.
	guardSteerReasonSTEER_NEXT_NOT_IP: "steer_next_not_ip",
	// Left to the guard: not from the sandbox's own address (spoofed, or
	// link-local and unspecified IPv6 sources such as neighbour discovery).
	guardSteerReasonSTEER_NEXT_FOREIGN_SOURCE: "steer_next_foreign_source",
	// Left to the guard, which passes it: to the agent's service address.
	guardSteerReasonSTEER_NEXT_SERVICE: "steer_next_service",
	// Left to the guard: ICMP to the host end's address, ICMPv6 to it or
	// to a link-local or multicast address (neighbour discovery, errors).
	guardSteerReasonSTEER_NEXT_HOST: "steer_next_host",
	// Dropped: the socket it would go to is not set (no agent running, or
	// it has not called SetSteerSockets yet).
	guardSteerReasonSTEER_NO_LISTENER: "steer_no_listener",
	// Dropped: the kernel refused to assign the socket (bpf_sk_assign
	// failed: a socket of another network namespace, or one closing).
	guardSteerReasonSTEER_ASSIGN_FAILED: "steer_assign_failed",
	// Dropped: UDP to a port other than 53 (QUIC included).
	guardSteerReasonSTEER_DROP_UDP: "steer_drop_udp",
	// Dropped: ICMP or ICMPv6 to anywhere but the host end and link scope
	// (echo requests to the world).
	guardSteerReasonSTEER_DROP_ICMP: "steer_drop_icmp",
	// Dropped: an IP protocol other than TCP, UDP and ICMP (SCTP, GRE,
	// ...), or no next header.
	guardSteerReasonSTEER_DROP_OTHER: "steer_drop_other",
	// Dropped: an IPv4 fragment, first or later.
	guardSteerReasonSTEER_DROP_FRAGMENT: "steer_drop_fragment",
	// Dropped: IPv6 with extension headers (fragments included), which
	// the steering program does not walk.
	guardSteerReasonSTEER_DROP_IPV6EXT: "steer_drop_ipv6_ext",
	// Dropped: UDP or TCP to a multicast or the limited broadcast address.
	guardSteerReasonSTEER_DROP_MULTICAST: "steer_drop_multicast",
	// Dropped: an IP or transport header truncated or inconsistent.
	guardSteerReasonSTEER_DROP_MALFORMED: "steer_drop_malformed",
	// A SYN reusing the 4-tuple of a connection in TIME_WAIT on the host,
	// given to that socket: it answers with an ACK, the sandbox resets,
	// and the SYN it retransmits about a second later is a new one.
	guardSteerReasonSTEER_TCP_TIME_WAIT: "steer_tcp_time_wait",
	// Dropped: such a SYN while a host service listens on its destination
	// port, to which the TIME_WAIT socket would hand it. The sandbox
	// retries until TIME_WAIT ends (60 s).
	guardSteerReasonSTEER_DROP_TIME_WAIT: "steer_drop_time_wait",
}
