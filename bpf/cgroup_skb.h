// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// cgroup_skb egress filter, the cgroup capture's second line of defence.
// Included by cgroup.c, whose maps, constants and count() it uses, so that
// it loads and counts as part of the same collection.
//
// It sees IP packets after the socket hooks have rewritten their
// destinations, so legitimately captured traffic is already addressed to a
// service; anything else got past the hooks (raw sockets, a detached hook, a
// kernel path the hooks do not cover) and is dropped, counted and reported.

#ifndef KEYGATE_CGROUP_SKB_H
#define KEYGATE_CGROUP_SKB_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>

#define ICMPV6_ROUTER_SOLICIT 133
#define ICMPV6_NEIGH_SOLICIT 135
#define ICMPV6_NEIGH_ADVERT 136

// skb_drop drops skb for reason, counting and reporting it. The event
// names the cgroup of the packet's socket, which is not always the current
// task's (a TCP retransmission runs from a timer).
static __noinline int skb_drop(struct __sk_buff *skb, enum reason reason)
{
	count(reason);
	struct deny_event *ev = event_reserve(&deny_events, reason);
	if (!ev) {
		count(REASON_EVENT_LOST);
		return 0;
	}
	ev->cgroup_id = bpf_skb_cgroup_id(skb);
	// cgroup_skb programs see the packet from its IP header on.
	event_packet(skb, 0, ev);
	event_submit(ev);
	return 0;
}

// is_service_port reports whether proto/port is what the service at addr
// listens on: the proxy takes TCP, the resolver TCP and UDP.
static __always_inline int is_service_port(__u8 proto, __u16 port, int proxy, int dns)
{
	if (proxy && proto == IPPROTO_TCP && port == proxy_port)
		return 1;
	return dns && (proto == IPPROTO_TCP || proto == IPPROTO_UDP) && port == dns_port;
}

static __always_inline int skb_egress4(struct __sk_buff *skb)
{
	struct l4_ports ports;
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		goto drop;

	// The sandbox's own network namespace: nothing leaves through lo.
	if (ip4_is_loopback(ip.daddr)) {
		count(REASON_SKB_PASS_LOOPBACK);
		return 1;
	}

	int proxy = ip.daddr == proxy_ip4, dns = ip.daddr == dns_ip4;
	if (!proxy && !dns)
		goto drop;
	// Only a packet with a transport header shows its port. A later
	// fragment has none; DNS queries and TCP segments are not fragmented.
	if (bpf_ntohs(ip.frag_off) & IP_OFFMASK)
		goto drop;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &ports, sizeof(ports)) < 0)
		goto drop;
	if (!is_service_port(ip.protocol, bpf_ntohs(ports.dest), proxy, dns))
		goto drop;

	// Captured TCP and DNS, rewritten by connect4/sendmsg4.
	count(REASON_SKB_PASS_SERVICE);
	return 1;
drop:
	return skb_drop(skb, REASON_SKB_DROP_V4);
}

// is_nd reports whether the IPv6 packet is neighbour discovery the
// sandbox's kernel needs to reach its gateway: router and neighbour
// solicitations and neighbour advertisements, with the hop limit of 255
// that RFC 4861 requires (so no router forwards them), to a link-local
// unicast or link-local-scope multicast address.
static __always_inline int is_nd(struct __sk_buff *skb, struct ipv6hdr *ip)
{
	__u8 type;

	if (ip->nexthdr != IPPROTO_ICMPV6 || ip->hop_limit != 255)
		return 0;
	if (!ip6_is_link_local(ip->daddr.in6_u.u6_addr32) &&
	    !ip6_is_link_mcast(ip->daddr.in6_u.u6_addr32))
		return 0;
	if (bpf_skb_load_bytes(skb, sizeof(*ip), &type, sizeof(type)) < 0)
		return 0;
	return type == ICMPV6_ROUTER_SOLICIT || type == ICMPV6_NEIGH_SOLICIT ||
	       type == ICMPV6_NEIGH_ADVERT;
}

static __always_inline int skb_egress6(struct __sk_buff *skb)
{
	struct l4_ports ports;
	struct ipv6hdr ip;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) < 0)
		goto drop;

	__u32 *daddr = ip.daddr.in6_u.u6_addr32;
	if (ip6_is_loopback(daddr)) {
		count(REASON_SKB_PASS_LOOPBACK);
		return 1;
	}
	// Usually sent by the namespace's own ndisc socket, which is not in
	// the sandbox's cgroup; passed in case a sandbox creates its own
	// namespace, so its IPv6 can still find the gateway.
	if (is_nd(skb, &ip)) {
		count(REASON_SKB_PASS_ND);
		return 1;
	}

	int proxy = have_ip6 && ip6_eq(daddr, proxy_ip6);
	int dns = have_ip6 && ip6_eq(daddr, dns_ip6);
	if (!proxy && !dns)
		goto drop;
	// Extension headers (fragments included) hide the transport header;
	// the kernel adds none to captured TCP or DNS.
	if (ip.nexthdr != IPPROTO_TCP && ip.nexthdr != IPPROTO_UDP)
		goto drop;
	if (bpf_skb_load_bytes(skb, sizeof(ip), &ports, sizeof(ports)) < 0)
		goto drop;
	__u16 port = bpf_ntohs(ports.dest);
	if (!(proxy && ip.nexthdr == IPPROTO_TCP && port == proxy6_port) &&
	    !(dns && port == dns6_port))
		goto drop;

	// Captured TCP and DNS, rewritten by connect6/sendmsg6.
	count(REASON_SKB_PASS_SERVICE);
	return 1;
drop:
	return skb_drop(skb, REASON_SKB_DROP_V6);
}

SEC("cgroup_skb/egress")
int kg_skb_egress(struct __sk_buff *skb)
{
	// cgroup_skb programs see the packet from its IP header on.
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return skb_egress4(skb);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return skb_egress6(skb);

	return skb_drop(skb, REASON_SKB_DROP_OTHER_PROTO);
}

#endif // KEYGATE_CGROUP_SKB_H
