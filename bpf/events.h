// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// Denial events. A refusal the sandbox's user space sees (connect() failing
// EPERM) is invisible to the agent, and so is every packet the programs
// drop: besides being counted, each is reported as a struct deny_event in a
// ring buffer, which the agent reads to audit them (events_linux.go).
// Included by cgroup.c and guard.c, each of which has its own ring, and
// counts an event it has no room for as event_lost: reporting never blocks
// and never changes a verdict.
//
// Addresses are stored v4-mapped in IPv6-sized fields, as in addr.h.

#ifndef KEYGATE_EVENTS_H
#define KEYGATE_EVENTS_H

#include <linux/types.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"

// Bytes in each ring: a power of two and a multiple of the page size. With
// the ring's 8-byte record header an event takes 72, so 3640 fit.
#define DENY_EVENTS_SIZE (256 * 1024)

// deny_event.family of an ARP frame, whose addresses are IPv4 but which has
// no address family of its own.
#define EVENT_FAMILY_ARP 0xff

// The fragment offset bits of iphdr.frag_off, in host byte order.
#define IP_OFFMASK 0x1fff

// deny_event is one refusal, as events_linux.go decodes it. A pinned ring
// is reused by a later version whenever its size matches, so a change to
// this layout must rename the rings.
struct deny_event {
	__u64 ktime_ns;  // CLOCK_BOOTTIME (bpf_ktime_get_boot_ns)
	__u64 cgroup_id; // cgroup of the refused socket, or 0 (tc, no socket)
	__u32 ifindex;   // tc: the interface the frame arrived on; else 0
	__u16 reason;    // the enum reason value that was counted
	__u8 family;     // AF_INET, AF_INET6, EVENT_FAMILY_ARP, or 0: not IP
	__u8 l4proto;    // IPPROTO_*; IPPROTO_RAW for a socket protocol > 255
	__u8 dst[16];    // destination address, network byte order
	__u16 dport;     // destination port, host byte order
	__u8 src[16];    // source address: the packet's, or the socket's own
	__u16 sport;     // source port, host byte order
	__u8 steer;      // 1: reason is an enum steer_reason (steer.h)
	__u8 pad[3];
};

// l4_ports is the start of a TCP, UDP, UDP-Lite, SCTP or DCCP header.
struct l4_ports {
	__be16 source;
	__be16 dest;
};

// event_reserve starts an event for reason in ring, or returns NULL if the
// ring is full. The caller fills it in and submits it with event_submit.
// Reserving before parsing anything keeps a flood cheap once the ring is
// full.
static __always_inline struct deny_event *event_reserve(void *ring, __u16 reason)
{
	struct deny_event *ev = bpf_ringbuf_reserve(ring, sizeof(*ev), 0);

	if (!ev)
		return NULL;
	// Reserved space holds whatever an earlier event left there.
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->ktime_ns = bpf_ktime_get_boot_ns();
	ev->reason = reason;
	return ev;
}

// event_submit hands ev to the ring's reader. It is not inlined so that
// struct deny_event reaches BTF, where bpf2go finds it.
static __noinline void event_submit(struct deny_event *ev)
{
	bpf_ringbuf_submit(ev, 0);
}

// event_ip4 stores ip4 in a 16-byte address field, v4-mapped. The field
// need not be 4-byte aligned (deny_event.src is not).
static __always_inline void event_ip4(__u8 *field, __u32 ip4)
{
	__u32 a[4];

	ip6_set_v4mapped(a, ip4);
	__builtin_memcpy(field, a, sizeof(a));
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	       proto == IPPROTO_SCTP || proto == IPPROTO_DCCP;
}

// event_packet fills in ev's family, protocol, addresses and ports from
// the IP packet in skb whose header starts at offset l3, as far as its
// headers can be read. It leaves them zero for anything but IPv4 and IPv6.
static __always_inline void event_packet(struct __sk_buff *skb, __u32 l3, struct deny_event *ev)
{
	struct l4_ports ports;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) < 0)
			return;
		ev->family = AF_INET;
		ev->l4proto = ip.protocol;
		event_ip4(ev->src, ip.saddr);
		event_ip4(ev->dst, ip.daddr);
		// A later fragment has no transport header.
		if (ip.ihl < 5 || (bpf_ntohs(ip.frag_off) & IP_OFFMASK))
			return;
		l4 = l3 + ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;

		if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)) < 0)
			return;
		ev->family = AF_INET6;
		// Behind extension headers, this is the first one's number.
		ev->l4proto = ip.nexthdr;
		__builtin_memcpy(ev->src, &ip.saddr, sizeof(ev->src));
		__builtin_memcpy(ev->dst, &ip.daddr, sizeof(ev->dst));
		l4 = l3 + sizeof(ip);
	} else {
		return;
	}

	if (!has_ports(ev->l4proto) || bpf_skb_load_bytes(skb, l4, &ports, sizeof(ports)) < 0)
		return;
	ev->sport = bpf_ntohs(ports.source);
	ev->dport = bpf_ntohs(ports.dest);
}

#endif // KEYGATE_EVENTS_H
