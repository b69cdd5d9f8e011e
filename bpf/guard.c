//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// veth guard: a tcx ingress program on the host end of each sandbox's veth,
// so every frame a sandbox puts on the wire passes it, whatever the cgroup
// programs did: raw and AF_PACKET sockets, a gVisor netstack sandbox, a VM,
// or a sandbox whose cgroup hooks were detached. It lets through only what
// keygate's data path needs and nothing the host could forward:
//
//   ARP                     from the sandbox's own IPv4 address (or a probe);
//   neighbour discovery     solicitations and advertisements, link scope;
//   IPv4/IPv6 to a service  from the sandbox's own address, to the agent's
//                           service address (proxy and resolver);
//   ICMP errors             from the sandbox's own address to the host end,
//                           so the host learns of unreachable ports and the
//                           like.
//
// Everything else is dropped, counted by reason, and reported in
// guard_deny_events (events.h), for the agent's audit. The guard passes with
// TCX_NEXT rather than TCX_PASS, so a program attached after it still has a
// say, and a program that must act first attaches before it: the steering
// program of the tc capture mode (steer.h, included at the end so that it
// loads with the guard and shares its maps).

#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "events.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_VETHS 4096
#define LIBBPF_PIN_BY_NAME 1

// tcx verdicts (enum tcx_action_base, Linux 6.6); Debian's 6.1 UAPI headers
// lack them.
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2

#define ARPHRD_ETHER 1
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_PARAMPROB 4
#define ICMPV6_ROUTER_SOLICIT 133
#define ICMPV6_ROUTER_ADVERT 134
#define ICMPV6_NEIGH_SOLICIT 135
#define ICMPV6_NEIGH_ADVERT 136
#define ICMPV6_REDIRECT 137

// The agent's service address, filled in by the loader; network byte
// order. A zero have_ flag means the family has no service.
volatile const __u32 service_ip4 = 0;
volatile const __u32 service_ip6[4] = {};
volatile const __u8 have_service4 = 0;
volatile const __u8 have_service6 = 0;

// veth_cfg flags: which addresses of a veth_cfg are set.
#define VETH_SANDBOX4 (1 << 0)
#define VETH_SANDBOX6 (1 << 1)
#define VETH_HOST4 (1 << 2)
#define VETH_HOST6 (1 << 3)
// The veth's sandbox is captured in tc mode: kg_steer_ingress (steer.h)
// steers its TCP and DNS to the agent. Without it the steering program
// leaves every packet to the guard.
#define VETH_TC (1 << 4)

// veth_cfg describes one guarded veth: the only source addresses its
// sandbox may use and the host end's own addresses. Network byte order.
struct veth_cfg {
	__u32 sandbox_ip4;
	__u32 host_ip4;
	__u32 sandbox_ip6[4];
	__u32 host_ip6[4];
	__u32 flags; // VETH_*
};

// Exit reasons, counted per CPU. The names the Go side exports are in
// reasons.go; keep both in the same order and only ever append.
enum reason {
	REASON_PASS_SERVICE = 0,     // from the sandbox to the service address
	REASON_PASS_ARP,             // ARP from the sandbox's own IPv4 address
	REASON_PASS_ND,              // IPv6 neighbour/router solicitation, NA
	REASON_PASS_ICMP_ERROR,      // ICMP error from the sandbox to the host end
	REASON_DROP_SPOOFED_SOURCE,  // source is not the sandbox's own address
	REASON_DROP_NOT_SERVICE,     // destination is not a service address
	REASON_DROP_OTHER_ETHERTYPE, // neither ARP, IPv4 nor IPv6; VLAN tagged
	REASON_DROP_UNKNOWN_VETH,    // attached to an interface with no veth_cfg
	REASON_DROP_MALFORMED,       // header truncated or inconsistent
	REASON_DROP_LINK_LOCAL,      // link-scope IPv6 other than ND (MLD, mDNS)
	REASON_DROP_ND_ROUTER,       // router advertisement or redirect
	REASON_EVENT_LOST,           // guard or steering: a drop unreported, ring full
	REASON_MAX,
};

// ifindex of a host-end veth → its veth_cfg, written by the loader.
// Pinned, so guards keep their configuration while the agent is down.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VETHS);
	__type(key, __u32);
	__type(value, struct veth_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_veths SEC(".maps");

// reason → number of frames the guard judged for it. Pinned.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_counters SEC(".maps");

// Frames the guard and the steering program drop (struct deny_event), for
// the agent's audit. Pinned, like the cgroup programs' deny_events, whose
// name it must not share: the two may be pinned in one directory.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DENY_EVENTS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} guard_deny_events SEC(".maps");

// count is not inlined so that enum reason reaches BTF, where bpf2go finds
// it.
static __noinline void count(enum reason reason)
{
	__u64 *n = bpf_map_lookup_elem(&guard_counters, &reason);
	if (n)
		*n += 1;
}

// arp_eth is an ARP packet for IPv4 over Ethernet (RFC 826).
struct arp_eth {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 sip[4];
	__u8 tha[ETH_ALEN];
	__u8 tip[4];
} __attribute__((packed));

// event_arp fills in ev from the ARP packet in skb: the sender's and
// target's addresses, if it is ARP for IPv4 over Ethernet.
static __always_inline void event_arp(struct __sk_buff *skb, struct deny_event *ev)
{
	struct arp_eth arp;
	__u32 ip4;

	ev->family = EVENT_FAMILY_ARP;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return;
	if (arp.hln != ETH_ALEN || arp.pln != 4)
		return;
	__builtin_memcpy(&ip4, arp.sip, sizeof(ip4));
	event_ip4(ev->src, ip4);
	__builtin_memcpy(&ip4, arp.tip, sizeof(ip4));
	event_ip4(ev->dst, ip4);
}

// report puts the frame in skb, dropped for reason, in guard_deny_events:
// a drop of the guard's, or with steer set one of the steering program's.
static __noinline void report(struct __sk_buff *skb, __u16 reason, __u8 steer)
{
	struct deny_event *ev = event_reserve(&guard_deny_events, reason);
	if (!ev) {
		count(REASON_EVENT_LOST);
		return;
	}
	ev->ifindex = skb->ifindex;
	ev->steer = steer;
	if (skb->protocol == bpf_htons(ETH_P_ARP))
		event_arp(skb, ev);
	else
		event_packet(skb, ETH_HLEN, ev);
	event_submit(ev);
}

// pass passes the frame on to the next program (TCX_NEXT), counting reason.
static __always_inline int pass(enum reason reason)
{
	count(reason);
	return TCX_NEXT;
}

// drop drops the frame for reason, counting and reporting it.
static __always_inline int drop(struct __sk_buff *skb, enum reason reason)
{
	count(reason);
	report(skb, reason, 0);
	return TCX_DROP;
}

// guard_arp passes ARP whose sender is the sandbox's address, or 0.0.0.0
// for a duplicate address probe: a sandbox may not claim anyone else's
// address in the host's neighbour table.
static __always_inline int guard_arp(struct __sk_buff *skb, struct veth_cfg *cfg)
{
	struct arp_eth arp;
	__u32 sip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &arp, sizeof(arp)) < 0)
		return drop(skb, REASON_DROP_MALFORMED);
	if (arp.hrd != bpf_htons(ARPHRD_ETHER) || arp.pro != bpf_htons(ETH_P_IP) ||
	    arp.hln != ETH_ALEN || arp.pln != 4)
		return drop(skb, REASON_DROP_MALFORMED);

	__builtin_memcpy(&sip, arp.sip, sizeof(sip));
	if (sip != 0 && !((cfg->flags & VETH_SANDBOX4) && sip == cfg->sandbox_ip4))
		return drop(skb, REASON_DROP_SPOOFED_SOURCE);
	return pass(REASON_PASS_ARP);
}

static __always_inline int guard_ip4(struct __sk_buff *skb, struct veth_cfg *cfg)
{
	struct iphdr ip;
	__u8 icmp_type;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return drop(skb, REASON_DROP_MALFORMED);
	if (ip.version != 4 || ip.ihl < 5)
		return drop(skb, REASON_DROP_MALFORMED);

	// The proxy and the resolver tell sandboxes apart by source address.
	if (!(cfg->flags & VETH_SANDBOX4) || ip.saddr != cfg->sandbox_ip4)
		return drop(skb, REASON_DROP_SPOOFED_SOURCE);

	if (have_service4 && ip.daddr == service_ip4)
		return pass(REASON_PASS_SERVICE);

	if ((cfg->flags & VETH_HOST4) && ip.daddr == cfg->host_ip4 &&
	    ip.protocol == IPPROTO_ICMP && !(bpf_ntohs(ip.frag_off) & IP_OFFMASK)) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + ip.ihl * 4, &icmp_type, 1) < 0)
			return drop(skb, REASON_DROP_MALFORMED);
		if (icmp_type == ICMP_DEST_UNREACH || icmp_type == ICMP_TIME_EXCEEDED ||
		    icmp_type == ICMP_PARAMETERPROB)
			return pass(REASON_PASS_ICMP_ERROR);
	}
	return drop(skb, REASON_DROP_NOT_SERVICE);
}

// guard_nd judges an ICMPv6 router or neighbour solicitation or neighbour
// advertisement. These come from a link-local address, from :: during
// duplicate address detection, or from the sandbox's own address, and go
// to link-local unicast, link-local-scope multicast, or the host end's
// address (neighbour unreachability probes for the sandbox's gateway).
static __always_inline int guard_nd(struct __sk_buff *skb, struct ipv6hdr *ip,
				    struct veth_cfg *cfg)
{
	__u32 *saddr = ip->saddr.in6_u.u6_addr32;
	__u32 *daddr = ip->daddr.in6_u.u6_addr32;

	// RFC 4861 requires 255, so the packet cannot have been forwarded;
	// the host's ndisc drops anything else anyway.
	if (ip->hop_limit != 255)
		return drop(skb, REASON_DROP_MALFORMED);
	if (!ip6_is_link_local(saddr) && !ip6_is_zero(saddr) &&
	    !((cfg->flags & VETH_SANDBOX6) && ip6_eq(saddr, cfg->sandbox_ip6)))
		return drop(skb, REASON_DROP_SPOOFED_SOURCE);
	if (!ip6_is_link_local(daddr) && !ip6_is_link_mcast(daddr) &&
	    !((cfg->flags & VETH_HOST6) && ip6_eq(daddr, cfg->host_ip6)))
		return drop(skb, REASON_DROP_NOT_SERVICE);
	return pass(REASON_PASS_ND);
}

static __always_inline int guard_ip6(struct __sk_buff *skb, struct veth_cfg *cfg)
{
	struct ipv6hdr ip;
	__u8 icmp_type = 0;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return drop(skb, REASON_DROP_MALFORMED);
	if (ip.version != 6)
		return drop(skb, REASON_DROP_MALFORMED);

	if (ip.nexthdr == IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN + sizeof(ip), &icmp_type, 1) < 0)
			return drop(skb, REASON_DROP_MALFORMED);
		if (icmp_type == ICMPV6_ROUTER_SOLICIT || icmp_type == ICMPV6_NEIGH_SOLICIT ||
		    icmp_type == ICMPV6_NEIGH_ADVERT)
			return guard_nd(skb, &ip, cfg);
		// A sandbox is never the host's router: an advertisement could
		// give the host a route into the sandbox.
		if (icmp_type == ICMPV6_ROUTER_ADVERT || icmp_type == ICMPV6_REDIRECT)
			return drop(skb, REASON_DROP_ND_ROUTER);
	}

	__u32 *saddr = ip.saddr.in6_u.u6_addr32;
	__u32 *daddr = ip.daddr.in6_u.u6_addr32;

	// Kernel chatter such as MLD reports, and mDNS: nothing keygate uses,
	// and counted apart so it does not look like spoofing.
	if (ip6_is_link_local(saddr) || ip6_is_zero(saddr))
		return drop(skb, REASON_DROP_LINK_LOCAL);
	if (!(cfg->flags & VETH_SANDBOX6) || !ip6_eq(saddr, cfg->sandbox_ip6))
		return drop(skb, REASON_DROP_SPOOFED_SOURCE);

	if (have_service6 && ip6_eq(daddr, service_ip6))
		return pass(REASON_PASS_SERVICE);

	// ICMPv6 errors are types 1 (destination unreachable) to 4 (parameter
	// problem). Behind extension headers icmp_type stays 0 and the packet
	// is dropped.
	if ((cfg->flags & VETH_HOST6) && ip6_eq(daddr, cfg->host_ip6) &&
	    icmp_type >= 1 && icmp_type <= ICMPV6_PARAMPROB)
		return pass(REASON_PASS_ICMP_ERROR);
	return drop(skb, REASON_DROP_NOT_SERVICE);
}

SEC("tcx/ingress")
int kg_guard_ingress(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct veth_cfg *cfg = bpf_map_lookup_elem(&guard_veths, &ifindex);

	// Attached, but not (or no longer) configured: fail closed.
	if (!cfg)
		return drop(skb, REASON_DROP_UNKNOWN_VETH);

	// The stack strips a VLAN tag before tc runs and would hand the
	// packet to a VLAN device; skb->protocol is then the inner type.
	if (skb->vlan_present)
		return drop(skb, REASON_DROP_OTHER_ETHERTYPE);

	switch (skb->protocol) {
	case bpf_htons(ETH_P_ARP):
		return guard_arp(skb, cfg);
	case bpf_htons(ETH_P_IP):
		return guard_ip4(skb, cfg);
	case bpf_htons(ETH_P_IPV6):
		return guard_ip6(skb, cfg);
	}
	return drop(skb, REASON_DROP_OTHER_ETHERTYPE);
}

// The tc capture mode's steering program shares this file's maps.
#include "steer.h"
