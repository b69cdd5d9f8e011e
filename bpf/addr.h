// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// Address helpers shared by keygate's BPF programs. IPv6 addresses are four
// __u32 words in network byte order, as struct bpf_sock_addr, struct
// bpf_sock_ops and struct ipv6hdr hold them; IPv4 addresses are one such
// word. Where one field must hold either family, IPv4 is stored v4-mapped
// (::ffff:a.b.c.d), so a single 16-byte comparison covers both.

#ifndef KEYGATE_ADDR_H
#define KEYGATE_ADDR_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10

// The volatile parameters keep clang from merging the word loads: some
// context fields (struct bpf_sock_ops) allow only 4-byte reads.
static __always_inline int ip6_eq(const volatile __u32 *a, const volatile __u32 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline void ip6_copy(volatile __u32 *dst, const volatile __u32 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

// ip6_is_zero reports whether a is :: (the unspecified address).
static __always_inline int ip6_is_zero(const volatile __u32 *a)
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

// ip6_is_v4mapped reports whether a is ::ffff:a.b.c.d.
static __always_inline int ip6_is_v4mapped(const volatile __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

// ip6_set_v4mapped stores the IPv4 address ip4 in a as ::ffff:ip4.
static __always_inline void ip6_set_v4mapped(volatile __u32 *a, __u32 ip4)
{
	a[0] = 0;
	a[1] = 0;
	a[2] = bpf_htonl(0x0000ffff);
	a[3] = ip4;
}

static __always_inline int ip4_is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

// ip6_is_loopback reports whether a is ::1.
static __always_inline int ip6_is_loopback(const volatile __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

// ip6_is_link_local reports whether a is in fe80::/10.
static __always_inline int ip6_is_link_local(const volatile __u32 *a)
{
	return (bpf_ntohl(a[0]) & 0xffc00000) == 0xfe800000;
}

// ip6_is_link_mcast reports whether a is link-local-scope multicast
// (ff02::/16): all-nodes, all-routers, solicited-node and the like.
static __always_inline int ip6_is_link_mcast(const volatile __u32 *a)
{
	return (bpf_ntohl(a[0]) >> 16) == 0xff02;
}

// ip6_is_multicast reports whether a is in ff00::/8.
static __always_inline int ip6_is_multicast(const volatile __u32 *a)
{
	return (bpf_ntohl(a[0]) >> 24) == 0xff;
}

// ip4_is_multicast reports whether ip4 is in 224.0.0.0/4.
static __always_inline int ip4_is_multicast(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 28) == 0xe;
}

#endif // KEYGATE_ADDR_H
