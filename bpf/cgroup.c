//go:build ignore

// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// cgroup capture mode: socket hooks attached to keygate's parent cgroup, so
// they run for every process of every sandbox below it.
//
//   connect4  TCP → the proxy, DNS (TCP or connected UDP to port 53) → the
//             resolver, loopback untouched, anything else refused (EPERM).
//   sendmsg4  unconnected UDP to port 53 → the resolver, other UDP refused.
//   recvmsg4  replies from the resolver appear to come from the server asked.
//   sockops   once a redirected TCP socket has a source port, publish
//             (sandbox address, source port) → original destination so the
//             proxy can recover where the connection was going at accept().

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual MIT/GPL";

#define MAX_SOCKETS 65536
#define DNS_PORT 53
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

// Filled in by the loader before the programs are loaded.
volatile const __u32 proxy_ip4 = 0; // network byte order
volatile const __u16 proxy_port = 0; // host byte order
volatile const __u32 dns_ip4 = 0;   // network byte order
volatile const __u16 dns_port = 0;  // host byte order

// orig_dst is where a sandbox socket meant to go, and which cgroup asked.
struct orig_dst {
	__u32 ip4;  // network byte order
	__u16 port; // host byte order
	__u16 pad;
	__u64 cgroup_id;
};

// conn_key identifies a sandbox's TCP connection as the proxy sees its peer.
struct conn_key {
	__u32 ip4;  // sandbox source address, network byte order
	__u16 port; // source port, host byte order
	__u16 pad;
};

// Exit reasons, counted per CPU. Keep in sync with Reason* in bpf.go.
enum reason {
	REASON_TCP_REDIRECT = 0,
	REASON_DNS_REDIRECT,
	REASON_LOOPBACK,
	REASON_DENY_UDP,
	REASON_DENY_OTHER,
	REASON_DNS_REPLY,
	REASON_CONN_PUBLISHED,
	REASON_CONN_UNKNOWN,
	REASON_MAX,
};

// socket cookie → original destination, written at connect/sendmsg.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, __u64);
	__type(value, struct orig_dst);
} sock_dst SEC(".maps");

// (sandbox address, source port) → original destination, read by the proxy.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SOCKETS);
	__type(key, struct conn_key);
	__type(value, struct orig_dst);
} conn_dst SEC(".maps");

// reason → number of times a hook exited for it.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&counters, &reason);
	if (n)
		*n += 1;
}

static __always_inline int is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

// remember records the destination the sandbox asked for, keyed by socket.
static __always_inline void remember(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst dst = {
		.ip4 = ctx->user_ip4,
		.port = bpf_ntohs(ctx->user_port),
		.cgroup_id = bpf_get_current_cgroup_id(),
	};
	bpf_map_update_elem(&sock_dst, &cookie, &dst, BPF_ANY);
}

static __always_inline int redirect_dns(struct bpf_sock_addr *ctx)
{
	remember(ctx);
	ctx->user_ip4 = dns_ip4;
	ctx->user_port = bpf_htons(dns_port);
	count(REASON_DNS_REDIRECT);
	return 1;
}

SEC("cgroup/connect4")
int kg_connect4(struct bpf_sock_addr *ctx)
{
	__u16 port = bpf_ntohs(ctx->user_port);

	// DNS goes to the resolver whatever server was asked, loopback included:
	// a stub resolver on 127.0.0.53 must not answer on the sandbox's behalf.
	if (port == DNS_PORT && (ctx->type == SOCK_STREAM || ctx->type == SOCK_DGRAM))
		return redirect_dns(ctx);

	// The sandbox's loopback is its own network namespace's.
	if (is_loopback(ctx->user_ip4)) {
		count(REASON_LOOPBACK);
		return 1;
	}

	if (ctx->type == SOCK_STREAM && ctx->protocol == IPPROTO_TCP) {
		remember(ctx);
		ctx->user_ip4 = proxy_ip4;
		ctx->user_port = bpf_htons(proxy_port);
		count(REASON_TCP_REDIRECT);
		return 1;
	}

	// Non-DNS UDP (QUIC included) and anything else: connect() fails EPERM.
	count(ctx->type == SOCK_DGRAM ? REASON_DENY_UDP : REASON_DENY_OTHER);
	return 0;
}

SEC("cgroup/sendmsg4")
int kg_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (bpf_ntohs(ctx->user_port) == DNS_PORT)
		return redirect_dns(ctx);

	if (is_loopback(ctx->user_ip4)) {
		count(REASON_LOOPBACK);
		return 1;
	}

	count(REASON_DENY_UDP);
	return 0;
}

SEC("cgroup/recvmsg4")
int kg_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_ip4 != dns_ip4 || bpf_ntohs(ctx->user_port) != dns_port)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst)
		return 1;

	ctx->user_ip4 = dst->ip4;
	ctx->user_port = bpf_htons(dst->port);
	count(REASON_DNS_REPLY);
	return 1; // recvmsg hooks must allow
}

SEC("sockops")
int kg_sockops(struct bpf_sock_ops *skops)
{
	// TCP_CONNECT_CB runs in connect() after the source port is bound and
	// before the SYN leaves, so the entry exists before the proxy can accept.
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB || skops->family != 2 /* AF_INET */)
		return 1;

	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *dst = bpf_map_lookup_elem(&sock_dst, &cookie);
	if (!dst) {
		count(REASON_CONN_UNKNOWN);
		return 1;
	}

	struct conn_key key = {
		.ip4 = skops->local_ip4,
		.port = (__u16)skops->local_port,
	};
	bpf_map_update_elem(&conn_dst, &key, dst, BPF_ANY);
	count(REASON_CONN_PUBLISHED);
	return 1;
}
