// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// tc capture mode: kg_steer_ingress runs on the tcx ingress of a sandbox
// veth's host end, just before the guard, for sandboxes whose sockets the
// cgroup hooks cannot see (gVisor's netstack, a VM). Included by guard.c:
// it reads the guard's per-veth configuration, and loads, pins and is
// upgraded together with the guard.
//
// For a veth configured with VETH_TC, a packet from the sandbox's own
// address is
//
//   TCP                 assigned to its socket if the flow has one (the
//                       proxy's accepted connection, a handshake in
//                       progress), else to the proxy's listener, or the
//                       resolver's TCP listener for port 53 (a SYN that
//                       reuses a tuple in TIME_WAIT: see steer_time_wait);
//   UDP to port 53      assigned to the resolver's UDP socket, whatever
//                       server it was sent to (the socket is bound to
//                       port 53, so that its answers come from there);
//   ICMP to the host    left to the guard (ICMP errors, neighbour
//   end, link scope     discovery);
//   to the service      left to the guard, which passes it;
//   address
//   anything else       dropped: other UDP (QUIC), ICMP echo to the world,
//                       fragments, IPv6 extension headers, other protocols.
//
// Assigned packets are marked STEER_MARK and passed with TCX_PASS, ending
// the tcx chain. The agent's policy routing (pkg/tproxy) sends marked
// packets to a table whose default route is local, so the stack delivers
// them instead of forwarding them, to the assigned socket, which sees the
// original destination as its local address. The sockets must be
// transparent (IP_TRANSPARENT) to answer from that address. See
// bpf_sk_assign in https://man7.org/linux/man-pages/man7/bpf-helpers.7.html and the
// kernel selftest tools/testing/selftests/bpf/progs/test_sk_assign.c.
//
// Packets from any other source, and every packet of a veth not in tc
// mode, go on to the guard (TCX_NEXT) untouched.

#ifndef KEYGATE_STEER_H
#define KEYGATE_STEER_H

#define DNS_PORT 53
#define IP_MF 0x2000
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10

// The fwmark of steered packets, bpf.SteerMark on the Go side ("KG").
#define STEER_MARK 0x4b47

// Slots of steer_sockets, filled by the loader with the agent's
// transparent sockets.
enum steer_socket {
	SOCK_PROXY4 = 0, // the proxy's TCP listener, IPv4
	SOCK_PROXY6,     // the proxy's TCP listener, IPv6
	SOCK_DNS_TCP4,   // the resolver's TCP listener, IPv4
	SOCK_DNS_TCP6,   // the resolver's TCP listener, IPv6
	SOCK_DNS_UDP4,   // the resolver's UDP socket, IPv4
	SOCK_DNS_UDP6,   // the resolver's UDP socket, IPv6
	SOCK_MAX,
};

// Exit reasons of the steering program, counted per CPU. The names the Go
// side exports are in reasons.go; keep both in the same order and only
// ever append.
enum steer_reason {
	STEER_TCP_NEW = 0,         // SYN given to the proxy's listener
	STEER_TCP_ESTABLISHED,     // TCP given to its flow's socket
	STEER_TCP_NO_FLOW,         // non-SYN without a flow, given to a listener
	STEER_DNS_UDP,             // UDP to port 53 given to the resolver
	STEER_DNS_TCP,             // SYN to port 53 given to the resolver
	STEER_NEXT_CGROUP_MODE,    // veth not in tc mode: the guard decides
	STEER_NEXT_NOT_IP,         // ARP, other EtherTypes, VLAN: the guard decides
	STEER_NEXT_FOREIGN_SOURCE, // not from the sandbox's address: the guard decides
	STEER_NEXT_SERVICE,        // to the service address: the guard passes it
	STEER_NEXT_HOST,           // ICMP to the host end or link scope: the guard decides
	STEER_NO_LISTENER,         // dropped: the socket slot is empty
	STEER_ASSIGN_FAILED,       // dropped: bpf_sk_assign refused the socket
	STEER_DROP_UDP,            // dropped: UDP to a port other than 53
	STEER_DROP_ICMP,           // dropped: ICMP to anywhere but the host end
	STEER_DROP_OTHER,          // dropped: another IP protocol
	STEER_DROP_FRAGMENT,       // dropped: an IPv4 fragment
	STEER_DROP_IPV6_EXT,       // dropped: behind IPv6 extension headers
	STEER_DROP_MULTICAST,      // dropped: to a multicast or broadcast address
	STEER_DROP_MALFORMED,      // dropped: IP or transport header truncated or bad
	STEER_TCP_TIME_WAIT,       // SYN given to the TIME_WAIT socket of its tuple
	STEER_DROP_TIME_WAIT,      // dropped: SYN to a TIME_WAIT tuple, host listener
	STEER_REASON_MAX,
};

// steer_socket slot → socket. The kernel drops an entry when its socket
// closes, so slots of an agent that died are empty until the next one
// fills them. Pinned, so that programs still attached by an earlier agent
// see the sockets of the next one at once.
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SOCK_MAX);
	__type(key, enum steer_socket);
	__type(value, __u64); // socket cookie when read from user space
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_sockets SEC(".maps");

// steer_reason → number of packets the steering program judged for it.
// Pinned.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} steer_counters SEC(".maps");

// steer_verdict is not inlined so that enum steer_reason reaches BTF.
static __noinline int steer_verdict(enum steer_reason reason, int action)
{
	__u64 *n = bpf_map_lookup_elem(&steer_counters, &reason);
	if (n)
		*n += 1;
	return action;
}

#define steer_next(reason) steer_verdict(reason, TCX_NEXT)

// steer_drop drops the packet for reason, counting it and reporting it in
// the guard's ring, whose event_lost counts what does not fit.
static __always_inline int steer_drop(struct __sk_buff *skb, enum steer_reason reason)
{
	report(skb, reason, 1);
	return steer_verdict(reason, TCX_DROP);
}

// tcp_head is the start of a TCP header, up to the flags.
struct tcp_head {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff;
	__u8 flags; // TCP_FLAG_*
};

struct udp_ports {
	__be16 source;
	__be16 dest;
};

// assign hands the packet to sk, releases sk, and marks the packet so
// that policy routing delivers it locally.
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk,
				  enum steer_reason reason)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err)
		return steer_drop(skb, STEER_ASSIGN_FAILED);
	skb->mark = STEER_MARK;
	return steer_verdict(reason, TCX_PASS);
}

// assign_slot hands the packet to the agent's socket in slot. An empty
// slot (no agent, or it has not set its sockets yet) fails closed.
static __always_inline int assign_slot(struct __sk_buff *skb, __u32 slot,
				       enum steer_reason reason)
{
	struct bpf_sock *sk = bpf_map_lookup_elem(&steer_sockets, &slot);

	if (!sk)
		return steer_drop(skb, STEER_NO_LISTENER);
	return assign(skb, sk, reason);
}

// steer_time_wait steers a SYN that reuses the tuple of a connection the
// proxy closed first, still in TIME_WAIT on the host (for 60 seconds).
// The proxy's listener cannot take it: the kernel drops a new request
// socket whose tuple is in use (inet_ehash_insert in
// net/ipv4/inet_hashtables.c). Given to the TIME_WAIT socket, the SYN is
// answered with an ACK of the old connection, the sandbox's stack resets
// it, the reset ends TIME_WAIT, and the SYN the sandbox retransmits a
// second later finds the listener. But a TIME_WAIT socket that accepts a
// SYN first hands it to a listener on the original destination's port,
// if the host has one, which must never see a sandbox's connection: then
// the SYN is dropped, and the sandbox retries until TIME_WAIT is over.
// TODO: an sk_lookup program giving such SYNs the proxy's listener would
// spare the second of delay, and the minute where a host service listens
// on the port.
static __always_inline int steer_time_wait(struct __sk_buff *skb, struct bpf_sock *tw,
					   struct bpf_sock_tuple *tuple, __u32 tuple_len,
					   int six)
{
	// No connection has source port 0, so this finds only a listener.
	if (six)
		tuple->ipv6.sport = 0;
	else
		tuple->ipv4.sport = 0;
	struct bpf_sock *ln = bpf_skc_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (ln) {
		bpf_sk_release(ln);
		bpf_sk_release(tw);
		return steer_drop(skb, STEER_DROP_TIME_WAIT);
	}
	return assign(skb, tw, STEER_TCP_TIME_WAIT);
}

// steer_tcp steers a TCP segment whose tuple has its addresses filled in.
static __always_inline int steer_tcp(struct __sk_buff *skb, struct bpf_sock_tuple *tuple,
				     __u32 tuple_len, __u32 l4_off, int six)
{
	struct tcp_head tcp;

	if (bpf_skb_load_bytes(skb, l4_off, &tcp, sizeof(tcp)) < 0)
		return steer_drop(skb, STEER_DROP_MALFORMED);
	if (six) {
		tuple->ipv6.sport = tcp.source;
		tuple->ipv6.dport = tcp.dest;
	} else {
		tuple->ipv4.sport = tcp.source;
		tuple->ipv4.dport = tcp.dest;
	}
	int syn = (tcp.flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;

	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, tuple, tuple_len, BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		// The flow's own socket: established, in its handshake (a
		// request socket, so a retransmitted SYN gets the same
		// SYN-ACK), or in TIME_WAIT. A listener found here is not the
		// flow's but whatever listens on the destination's port on the
		// host (sshd on *:22): the agent's listener gets the segment
		// instead.
		__u32 state = sk->state;
		if (state != BPF_TCP_LISTEN && !(syn && state == BPF_TCP_TIME_WAIT))
			return assign(skb, sk, STEER_TCP_ESTABLISHED);
		if (state == BPF_TCP_TIME_WAIT)
			return steer_time_wait(skb, sk, tuple, tuple_len, six);
		bpf_sk_release(sk);
	}

	// A segment of no flow goes to a listener too, which answers it with
	// a reset (or accepts it as the end of a SYN cookie handshake).
	int dns = bpf_ntohs(tcp.dest) == DNS_PORT;
	__u32 slot = dns ? (six ? SOCK_DNS_TCP6 : SOCK_DNS_TCP4) : (six ? SOCK_PROXY6 : SOCK_PROXY4);
	enum steer_reason reason = !syn ? STEER_TCP_NO_FLOW : dns ? STEER_DNS_TCP : STEER_TCP_NEW;
	return assign_slot(skb, slot, reason);
}

static __always_inline int steer_udp(struct __sk_buff *skb, __u32 l4_off, int six)
{
	struct udp_ports ports;

	if (bpf_skb_load_bytes(skb, l4_off, &ports, sizeof(ports)) < 0)
		return steer_drop(skb, STEER_DROP_MALFORMED);
	if (bpf_ntohs(ports.dest) != DNS_PORT)
		return steer_drop(skb, STEER_DROP_UDP);
	return assign_slot(skb, six ? SOCK_DNS_UDP6 : SOCK_DNS_UDP4, STEER_DNS_UDP);
}

static __always_inline int steer_ip4(struct __sk_buff *skb, struct veth_cfg *cfg)
{
	struct bpf_sock_tuple tuple = {};
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.version != 4 ||
	    ip.ihl < 5)
		return steer_drop(skb, STEER_DROP_MALFORMED);
	if (!(cfg->flags & VETH_SANDBOX4) || ip.saddr != cfg->sandbox_ip4)
		return steer_next(STEER_NEXT_FOREIGN_SOURCE);
	if (have_service4 && ip.daddr == service_ip4)
		return steer_next(STEER_NEXT_SERVICE);
	if (ip.protocol == IPPROTO_ICMP) {
		if ((cfg->flags & VETH_HOST4) && ip.daddr == cfg->host_ip4)
			return steer_next(STEER_NEXT_HOST);
		return steer_drop(skb, STEER_DROP_ICMP);
	}
	if (ip4_is_multicast(ip.daddr) || ip.daddr == 0xffffffff)
		return steer_drop(skb, STEER_DROP_MULTICAST);
	// A later fragment has no ports to steer by, and the first one must
	// not reach a socket without the rest. TCP and DNS queries are not
	// fragmented (runsc's netstack sets DF, like Linux).
	if (bpf_ntohs(ip.frag_off) & (IP_MF | IP_OFFMASK))
		return steer_drop(skb, STEER_DROP_FRAGMENT);

	tuple.ipv4.saddr = ip.saddr;
	tuple.ipv4.daddr = ip.daddr;
	__u32 l4_off = ETH_HLEN + ip.ihl * 4;
	if (ip.protocol == IPPROTO_TCP)
		return steer_tcp(skb, &tuple, sizeof(tuple.ipv4), l4_off, 0);
	if (ip.protocol == IPPROTO_UDP)
		return steer_udp(skb, l4_off, 0);
	return steer_drop(skb, STEER_DROP_OTHER);
}

// ip6_is_ext_header reports whether next is an IPv6 extension header
// (RFC 8200 section 4 and the IANA list), which hides the transport header.
static __always_inline int ip6_is_ext_header(__u8 next)
{
	switch (next) {
	case 0:   // hop-by-hop options
	case 43:  // routing
	case 44:  // fragment
	case 50:  // ESP
	case 51:  // AH
	case 60:  // destination options
	case 135: // mobility
	case 139: // HIP
	case 140: // shim6
	case 253: // experimental
	case 254: // experimental
		return 1;
	}
	return 0;
}

static __always_inline int steer_ip6(struct __sk_buff *skb, struct veth_cfg *cfg)
{
	struct bpf_sock_tuple tuple = {};
	struct ipv6hdr ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.version != 6)
		return steer_drop(skb, STEER_DROP_MALFORMED);

	__u32 *saddr = ip.saddr.in6_u.u6_addr32;
	__u32 *daddr = ip.daddr.in6_u.u6_addr32;

	// Link-local and unspecified sources (neighbour discovery, MLD) are
	// foreign too: the guard judges them.
	if (!(cfg->flags & VETH_SANDBOX6) || !ip6_eq(saddr, cfg->sandbox_ip6))
		return steer_next(STEER_NEXT_FOREIGN_SOURCE);
	if (have_service6 && ip6_eq(daddr, service_ip6))
		return steer_next(STEER_NEXT_SERVICE);
	// Neighbour solicitations from the sandbox's global address go to a
	// solicited-node multicast address or the host end.
	if (ip.nexthdr == IPPROTO_ICMPV6) {
		if (((cfg->flags & VETH_HOST6) && ip6_eq(daddr, cfg->host_ip6)) ||
		    ip6_is_link_local(daddr) || ip6_is_multicast(daddr))
			return steer_next(STEER_NEXT_HOST);
		return steer_drop(skb, STEER_DROP_ICMP);
	}
	if (ip6_is_multicast(daddr))
		return steer_drop(skb, STEER_DROP_MULTICAST);

	ip6_copy(tuple.ipv6.saddr, saddr);
	ip6_copy(tuple.ipv6.daddr, daddr);
	__u32 l4_off = ETH_HLEN + sizeof(ip);
	if (ip.nexthdr == IPPROTO_TCP)
		return steer_tcp(skb, &tuple, sizeof(tuple.ipv6), l4_off, 1);
	if (ip.nexthdr == IPPROTO_UDP)
		return steer_udp(skb, l4_off, 1);
	// Walking the header chain costs verifier complexity for traffic
	// neither the Linux nor the gVisor stack sends on a TCP or DNS flow.
	if (ip6_is_ext_header(ip.nexthdr))
		return steer_drop(skb, STEER_DROP_IPV6_EXT);
	return steer_drop(skb, STEER_DROP_OTHER);
}

SEC("tcx/ingress")
int kg_steer_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct veth_cfg *cfg = bpf_map_lookup_elem(&guard_veths, &ifindex);

	// Unconfigured veths are the guard's to drop.
	if (!cfg || !(cfg->flags & VETH_TC))
		return steer_next(STEER_NEXT_CGROUP_MODE);
	if (skb->vlan_present)
		return steer_next(STEER_NEXT_NOT_IP);

	// A GSO packet (up to 64 KiB; runsc's netstack and the sandbox's
	// kernel both send them) is one skb with one set of headers: it is
	// assigned as a whole.
	switch (skb->protocol) {
	case bpf_htons(ETH_P_IP):
		return steer_ip4(skb, cfg);
	case bpf_htons(ETH_P_IPV6):
		return steer_ip6(skb, cfg);
	}
	return steer_next(STEER_NEXT_NOT_IP);
}

#endif // KEYGATE_STEER_H
