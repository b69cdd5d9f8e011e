// Package bpf loads and attaches keygate's eBPF programs and is the only
// package that touches the bpf2go-generated types.
//
// The C sources live next to this file, one per capture front end:
// cgroup.c holds the socket hooks and the cgroup_skb filter attached to
// keygate's parent cgroup, guard.c the tcx programs on the host end of each
// sandbox's veth: the guard, and (steer.h) the steering program of the tc
// capture mode. Both report what they refuse through a ring buffer
// (events.h), read with DenyEvents. The generated Go bindings and objects
// are committed and regenerated with `make generate`.
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type orig_dst -type conn_key -type reason -type deny_event cgroup cgroup.c
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -type veth_cfg -type reason -type steer_reason -type steer_socket -type deny_event guard guard.c
