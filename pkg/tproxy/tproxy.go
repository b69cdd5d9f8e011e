// Package tproxy sets up what a host needs to accept connections and
// datagrams addressed to somewhere else, as keygate's tc capture mode
// hands them over: the sandbox's packets keep their original destination,
// a BPF program assigns them to one of the agent's sockets and marks them,
// and the kernel must then
//
//   - deliver a marked packet locally although its destination is not a
//     local address: Install adds a policy routing rule for the mark and a
//     table whose default route is local;
//   - let the socket answer from that destination: ListenTCP and
//     ListenUDP make transparent sockets (IP_TRANSPARENT,
//     IPV6_TRANSPARENT), set before bind.
//
// A connection accepted from such a listener has the address the sandbox
// dialled as its LocalAddr, and answers from it. A UDP socket from
// ListenUDP reports each datagram's destination in IP_PKTINFO /
// IPV6_PKTINFO control messages, and a reply sent with that address as
// the packet-info source leaves from it; github.com/miekg/dns's Server
// already does exactly that for a *net.UDPConn PacketConn (ReadMsgUDP,
// then WriteMsgUDP with the destination as the source). The source port,
// though, is always the socket's own: a resolver socket that tc-mode
// sandboxes query on port 53 must itself be bound to port 53, or their
// connected sockets drop its answers. Bound there (on the service
// address, say), one socket serves both sandboxes that send to its own
// address and sandboxes whose packets were assigned to it.
//
// Everything here needs CAP_NET_ADMIN and works in the network namespace
// of the calling thread.
package tproxy

import "errors"

// ErrNotSupported is returned on systems other than Linux.
var ErrNotSupported = errors.New("transparent proxying not supported")
