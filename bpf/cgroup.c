//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// cgroup capture mode: programs attached to keygate's parent cgroup, so they
// run for every process of every sandbox below it.
//
//   connect4/6     TCP → the proxy, DNS (TCP or connected UDP to port 53) →
//                  the resolver, loopback untouched, anything else refused
//                  (EPERM).
//   sendmsg4/6     unconnected UDP to port 53 → the resolver, other UDP
//                  refused.
//   recvmsg4/6     replies from the resolver appear to come from the server
//                  asked.
//   getpeername4/6 a redirected socket reports the peer it dialled.
//   sock_release   forgets a closing socket's original destination.
//   sockops        once a redirected TCP socket has a source port, publish
//                  (sandbox address, source port) → original destination so
//                  the proxy can recover where the connection was going.
//   cgroup_skb     second line of defence (cgroup_skb.h): every IP packet
//                  a sandbox socket sends must be addressed to the proxy,
//                  the resolver or loopback, whatever the hooks above did.
//
// Every refusal and every drop is also reported in deny_events (events.h).
//
// None of these see AF_PACKET sockets, which bypass the IP stack; the veth
// guard (guard.c) stops those.
//
// Addresses are stored v4-mapped in IPv6-sized fields (see addr.h), so one
// entry format serves AF_INET sockets, AF_INET6 sockets and AF_INET6
// sockets that dial IPv4 through ::ffff:a.b.c.d.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "addr.h"
#include "events.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_SOCKETS 65536
#define DNS_PORT 53
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define LIBBPF_PIN_BY_NAME 1

// Filled in by the loader before the programs are loaded. Addresses are in
// network byte order, ports in host byte order.
volatile const __u32 proxy_ip4 = 0;
volatile const __u16 proxy_port = 0;
volatile const __u32 dns_ip4 = 0;
volatile const __u16 dns_port = 0;
volatile const __u32 proxy_ip6[4] = {};
volatile const __u16 proxy6_port = 0;
volatile const __u32 dns_ip6[4] = {};
volatile const __u16 dns6_port = 0;
// Zero when the agent has no IPv6 service address: IPv6 destinations that
// are not v4-mapped are then refused.
volatile const __u8 have_ip6 = 0;

// orig_dst is where a sandbox socket meant to go, and which cgroup asked.
struct orig_dst {
	__u64 cgroup_id;
	__u32 ip6[4]; // IPv6, or IPv4 v4-mapped; network byte order
	__u16 port;   // host byte order
	__u16 pad[3];
};

// conn_key identifies a sandbox's TCP connection as the proxy sees its peer.
struct conn_key {
	__u32 ip6[4]; // sandbox source address (IPv4 v4-mapped), network order
	__u16 port;   // source port, host byte order
	__u16 pad;
};

// Exit reasons, counted per CPU. The names the Go side exports are in
// reasons.go; keep both in the same order and only ever append.
enum reason {
	REASON_TCP_REDIRECT = 0,     // connect4: TCP sent to the proxy
	REASON_DNS_REDIRECT,         // connect4/sendmsg4: DNS sent to the resolver
	REASON_LOOPBACK,             // connect4/sendmsg4: 127.0.0.0/8 left alone
	REASON_DENY_UDP,             // connect4/sendmsg4: non-DNS UDP refused
	REASON_DENY_OTHER,           // connect4: any other socket type refused
	REASON_DNS_REPLY,            // recvmsg4: reply source restored
	REASON_CONN_PUBLISHED,       // sockops: conn_dst entry written
	REASON_CONN_UNKNOWN,         // sockops: TCP connect with no sock_dst entry
	REASON_TCP_REDIRECT6,        // connect6: TCP sent to the proxy
	REASON_DNS_REDIRECT6,        // connect6/sendmsg6: DNS sent to the resolver
	REASON_LOOPBACK6,            // connect6/sendmsg6: ::1 or ::ffff:127/104
	REASON_DENY_UDP6,            // connect6/sendmsg6: non-DNS UDP refused
	REASON_DENY_OTHER6,          // connect6: any other socket type refused
	REASON_DENY_NO_IP6,          // connect6/sendmsg6: IPv6 asked, none configured
	REASON_DNS_REPLY6,           // recvmsg6: reply source restored
	REASON_PEER_RESTORED,        // getpeername4/6: dialled peer reported
	REASON_SOCK_FORGOTTEN,       // sock_release: sock_dst entry removed
	REASON_SKB_PASS_SERVICE,     // cgroup_skb: packet to the proxy/resolver
	REASON_SKB_PASS_LOOPBACK,    // cgroup_skb: packet to 127.0.0.0/8 or ::1
	REASON_SKB_PASS_ND,          // cgroup_skb: IPv6 neighbour discovery
	REASON_SKB_DROP_V4,          // cgroup_skb: IPv4 packet to anywhere else
	REASON_SKB_DROP_V6,          // cgroup_skb: IPv6 packet to anywhere else
	REASON_SKB_DROP_OTHER_PROTO, // cgroup_skb: neither IPv4 nor IPv6
	REASON_EVENT_LOST,           // any: deny_events full, a denial unreported
	REASON_MAX,
};

// socket cookie → original destination, written at connect/sendmsg and
// removed at sock_release. Pinned: it outlives the agent.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_dst SEC(".maps");

// (sandbox address, source port) → original destination, read and deleted
// by the proxy at accept(). Pinned.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, struct conn_key);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conn_dst SEC(".maps");

// reason → number of times a program exited for it. Pinned.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

// Refusals and drops (struct deny_event), for the agent's audit. Pinned,
// so what happens while no agent runs waits for the next one, as far as
// it fits.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DENY_EVENTS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} deny_events SEC(".maps");

// count is not inlined so that enum reason reaches BTF, where bpf2go finds it.
static __noinline void count(enum reason reason)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &reason);
	if (n)
		*n += 1;
}

// deny refuses the connect() or sendmsg() ctx is for (it fails EPERM),
// counting and reporting it. family is the hook's, dst the destination the
// socket asked for, IPv4 v4-mapped: a sock_addr program may read only its
// own family's user_ip fields, so the hook passes them.
static __noinline int deny(struct bpf_sock_addr *ctx, enum reason reason, __u8 family,
			   __u32 *dst)
{
	count(reason);
	struct deny_event *ev = event_reserve(&deny_events, reason);
	if (!ev) {
		count(REASON_EVENT_LOST);
		return 0;
	}

	struct bpf_sock *sk = ctx->sk;
	__u32 src[4];
	if (sk->family == AF_INET6)
		ip6_copy(src, sk->src_ip6);
	else
		ip6_set_v4mapped(src, sk->src_ip4);

	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->family = family;
	// IPPROTO_MPTCP (262) is the one socket protocol without an IP number.
	ev->l4proto = ctx->protocol <= 0xff ? ctx->protocol : IPPROTO_RAW;
	__builtin_memcpy(ev->dst, dst, sizeof(ev->dst));
	ev->dport = bpf_ntohs(ctx->user_port);
	__builtin_memcpy(ev->src, src, sizeof(ev->src));
	ev->sport = sk->src_port; // 0 until bound
	event_submit(ev);
	return 0;
}

// deny4 is deny for the AF_INET hooks.
static __always_inline int deny4(struct bpf_sock_addr *ctx, enum reason reason)
{
	__u32 dst[4];

	ip6_set_v4mapped(dst, ctx->user_ip4);
	return deny(ctx, reason, AF_INET, dst);
}

static __always_inline int is_tcp(struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP;
}

static __always_inline int is_udp(struct bpf_sock_addr *ctx)
{
	return ctx->type == SOCK_DGRAM && ctx->protocol == IPPROTO_UDP;
}

// remember records the destination the sandbox asked for, keyed by socket.
static __always_inline void remember(struct bpf_sock_addr *ctx, __u32 *ip6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst dst = {
		.cgroup_id = bpf_get_current_cgroup_id(),
		.port = bpf_ntohs(ctx->user_port),
	};
	ip6_copy(dst.ip6, ip6);
	bpf_map_update_elem(&sock_dst, &cookie, &dst, BPF_ANY);
}

// redirect4 sends an AF_INET socket to ip4:port, remembering where it was
// going.
static __always_inline int redirect4(struct bpf_sock_addr *ctx, __u32 ip4, __u16 port,
				     __u32 reason)
{
	__u32 orig[4];

	ip6_set_v4mapped(orig, ctx->user_ip4);
	remember(ctx, orig);
	ctx->user_ip4 = ip4;
	ctx->user_port = bpf_htons(port);
	count(reason);
	return 1;
}

// redirect6 sends an AF_INET6 socket to a service, remembering where it was
// going. A v4-mapped destination goes to the service's IPv4 address,
// v4-mapped, so the socket stays on IPv4 as the sandbox asked; anything
// else goes to the service's IPv6 address, or is refused if there is none.
static __always_inline int redirect6(struct bpf_sock_addr *ctx, __u32 *orig, __u32 ip4,
				     __u16 port4, const volatile __u32 *ip6, __u16 port6,
				     __u32 reason)
{
	__u32 svc[4];

	if (ip6_is_v4mapped(orig)) {
		ip6_set_v4mapped(svc, ip4);
	} else if (have_ip6) {
		ip6_copy(svc, ip6);
		port4 = port6;
	} else {
		return deny(ctx, REASON_DENY_NO_IP6, AF_INET6, orig);
	}
	remember(ctx, orig);
	ip6_copy(ctx->user_ip6, svc);
	ctx->user_port = bpf_htons(port4);
	count(reason);
	return 1;
}

SEC("cgroup/connect4")
int kg_connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);

	// DNS goes to the resolver whatever server was asked, loopback included:
	// a stub resolver on 127.0.0.53 must not answer on the sandbox's behalf.
	if (port == DNS_PORT && (is_tcp(ctx) || is_udp(ctx)))
		return redirect4(ctx, dns_ip4, dns_port, REASON_DNS_REDIRECT);

	// The sandbox's loopback is its own network namespace's.
	if (ip4_is_loopback(ctx->user_ip4)) {
		count(REASON_LOOPBACK);
		return 1;
	}

	if (is_tcp(ctx))
		return redirect4(ctx, proxy_ip4, proxy_port, REASON_TCP_REDIRECT);

	// Non-DNS UDP (QUIC included), ping sockets, MPTCP and anything else:
	// connect() fails EPERM.
	return deny4(ctx, is_udp(ctx) ? REASON_DENY_UDP : REASON_DENY_OTHER);
}

// kg_connect6 mirrors kg_connect4 for AF_INET6 sockets. A dual-stack socket
// that dials ::ffff:a.b.c.d is redirected to ::ffff:<service IPv4>: the
// kernel then connects over IPv4 from inside tcp_v6_connect (or
// __ip6_datagram_connect), which calls tcp_v4_connect directly, so
// connect4 does not run for it. TestSocketHooks checks this on the running
// kernel (it counts tcp_redirect6, not tcp_redirect). See
// https://github.com/torvalds/linux/blob/master/net/ipv6/tcp_ipv6.c
SEC("cgroup/connect6")
int kg_connect6(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 dst[4];

	ip6_copy(dst, ctx->user_ip6);

	if (port == DNS_PORT && (is_tcp(ctx) || is_udp(ctx)))
		return redirect6(ctx, dst, dns_ip4, dns_port, dns_ip6, dns6_port,
				 REASON_DNS_REDIRECT6);

	if (ip6_is_loopback(dst) || (ip6_is_v4mapped(dst) && ip4_is_loopback(dst[3]))) {
		count(REASON_LOOPBACK6);
		return 1;
	}

	if (is_tcp(ctx))
		return redirect6(ctx, dst, proxy_ip4, proxy_port, proxy_ip6, proxy6_port,
				 REASON_TCP_REDIRECT6);

	return deny(ctx, is_udp(ctx) ? REASON_DENY_UDP6 : REASON_DENY_OTHER6, AF_INET6, dst);
}

SEC("cgroup/sendmsg4")
int kg_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (bpf_ntohs(ctx->user_port) == DNS_PORT)
		return redirect4(ctx, dns_ip4, dns_port, REASON_DNS_REDIRECT);

	if (ip4_is_loopback(ctx->user_ip4)) {
		count(REASON_LOOPBACK);
		return 1;
	}

	return deny4(ctx, REASON_DENY_UDP);
}

// kg_sendmsg6 handles unconnected sends on AF_INET6 UDP sockets. It never
// sees v4-mapped destinations: udpv6_sendmsg hands those to udp_sendmsg,
// which runs sendmsg4 instead (TestSocketHooks checks this), and a
// sendmsg6 program may not rewrite to a v4-mapped address (udpv6_sendmsg
// then fails the send with ENOTSUPP; see
// https://github.com/torvalds/linux/blob/master/net/ipv6/udp.c). So a
// v4-mapped destination here is refused rather than redirected.
SEC("cgroup/sendmsg6")
int kg_sendmsg6(struct bpf_sock_addr *ctx)
{
	__u32 dst[4];

	ip6_copy(dst, ctx->user_ip6);

	if (ip6_is_v4mapped(dst))
		return deny(ctx, REASON_DENY_UDP6, AF_INET6, dst);
	if (bpf_ntohs(ctx->user_port) == DNS_PORT)
		return redirect6(ctx, dst, dns_ip4, dns_port, dns_ip6, dns6_port,
				 REASON_DNS_REDIRECT6);
	if (ip6_is_loopback(dst)) {
		count(REASON_LOOPBACK6);
		return 1;
	}

	return deny(ctx, REASON_DENY_UDP6, AF_INET6, dst);
}

SEC("cgroup/recvmsg4")
int kg_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_ip4 != dns_ip4 || bpf_ntohs(ctx->user_port) != dns_port)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst || !ip6_is_v4mapped(dst->ip6))
		return 1;

	ctx->user_ip4 = dst->ip6[3];
	ctx->user_port = bpf_htons(dst->port);
	count(REASON_DNS_REPLY);
	return 1; // recvmsg hooks must allow
}

// is_service6 reports whether ip6:port, as an AF_INET6 socket sees it, is
// the service at ip4:port4 (v4-mapped) or ip6_svc:port6.
static __always_inline int is_service6(__u32 *ip6, __u16 port, __u32 ip4, __u16 port4,
				       const volatile __u32 *ip6_svc, __u16 port6)
{
	if (ip6_is_v4mapped(ip6))
		return ip6[3] == ip4 && port == port4;
	return have_ip6 && ip6_eq(ip6, ip6_svc) && port == port6;
}

// kg_recvmsg6 runs for every datagram an AF_INET6 socket receives with a
// source address, IPv4 ones included (the kernel reports those v4-mapped).
SEC("cgroup/recvmsg6")
int kg_recvmsg6(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 src[4];

	ip6_copy(src, ctx->user_ip6);
	if (!is_service6(src, port, dns_ip4, dns_port, dns_ip6, dns6_port))
		return 1;

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	// An IPv4 reply is never dressed up as an IPv6 server's, or the reverse.
	if (!dst || ip6_is_v4mapped(dst->ip6) != ip6_is_v4mapped(src))
		return 1;

	ip6_copy(ctx->user_ip6, dst->ip6);
	ctx->user_port = bpf_htons(dst->port);
	count(REASON_DNS_REPLY6);
	return 1; // recvmsg hooks must allow
}

// kg_getpeername4 makes getpeername() on a redirected socket report the
// address the sandbox dialled. Only sockets whose peer is still a service
// are rewritten: one that was redirected and then reconnected to loopback
// keeps its real peer.
SEC("cgroup/getpeername4")
int kg_getpeername4(struct bpf_sock_addr *ctx)
{
	__u32 ip4 = ctx->user_ip4;
	__u16 port = bpf_ntohs(ctx->user_port);

	if (!(ip4 == proxy_ip4 && port == proxy_port) && !(ip4 == dns_ip4 && port == dns_port))
		return 1;

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst || !ip6_is_v4mapped(dst->ip6))
		return 1;

	ctx->user_ip4 = dst->ip6[3];
	ctx->user_port = bpf_htons(dst->port);
	count(REASON_PEER_RESTORED);
	return 1; // getpeername hooks must allow
}

SEC("cgroup/getpeername6")
int kg_getpeername6(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);
	__u32 peer[4];

	ip6_copy(peer, ctx->user_ip6);
	if (!is_service6(peer, port, proxy_ip4, proxy_port, proxy_ip6, proxy6_port) &&
	    !is_service6(peer, port, dns_ip4, dns_port, dns_ip6, dns6_port))
		return 1;

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst || ip6_is_v4mapped(dst->ip6) != ip6_is_v4mapped(peer))
		return 1;

	ip6_copy(ctx->user_ip6, dst->ip6);
	ctx->user_port = bpf_htons(dst->port);
	count(REASON_PEER_RESTORED);
	return 1; // getpeername hooks must allow
}

// kg_sock_release keeps sock_dst to live sockets. Socket cookies are never
// reused, so a stale entry is harmless, but under load the LRU would evict
// live entries to make room for dead ones.
SEC("cgroup/sock_release")
int kg_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);

	if (bpf_map_delete_elem(&sock_dst, &cookie) == 0)
		count(REASON_SOCK_FORGOTTEN);
	return 1;
}

SEC("sockops")
int kg_sockops(struct bpf_sock_ops *skops)
{
	// TCP_CONNECT_CB runs in connect() after the source port is bound and
	// before the SYN leaves, so the entry exists before the proxy can accept.
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst) {
		count(REASON_CONN_UNKNOWN);
		return 1;
	}

	struct conn_key key = {
		.port = (__u16)skops->local_port,
	};
	// An AF_INET6 socket dialling ::ffff:a.b.c.d connects through
	// tcp_v4_connect, which calls us before tcp_v6_connect has finished
	// with the socket: its IPv6 source may still be ::, or v4-mapped.
	// Either way local_ip4 holds the source the proxy will see.
	if (skops->family == AF_INET6)
		ip6_copy(key.ip6, skops->local_ip6);
	if (ip6_is_zero(key.ip6) || ip6_is_v4mapped(key.ip6))
		ip6_set_v4mapped(key.ip6, skops->local_ip4);

	bpf_map_update_elem(&conn_dst, &key, dst, BPF_ANY);
	count(REASON_CONN_PUBLISHED);
	return 1;
}

// The second line of defence shares this file's maps and constants.
#include "cgroup_skb.h"
