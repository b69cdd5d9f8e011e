//go:build linux

package bpf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary double as the sandbox process the socket
// hook tests start in a cgroup: see runChild.
func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(childMain(mode))
	}
	os.Exit(m.Run())
}

// childResult is what the child reports for one socket operation.
type childResult struct {
	Name string `json:"name"`
	Err  string `json:"err,omitempty"`  // errno name, or another error's text
	Peer string `json:"peer,omitempty"` // getpeername after connect
	From string `json:"from,omitempty"` // source of the reply, from recvfrom
}

// Child modes.
const (
	childSockets = "sockets" // the socket battery of TestSocketHooks
	childConnect = "connect" // one TCP connect, for the pinning tests
	childDenied  = "denied"  // what the programs refuse, for TestDenyEventsCgroup
	childFlood   = "flood"   // floodCount refused sends, likewise
	childTCP6    = "tcp6"    // one IPv6 TCP connect, for TestDenyEventsNoIP6
)

// floodCount is how many datagrams the flood mode sends, more than a deny
// event ring holds (3640).
const floodCount = 5000

// Environment of the sockets mode: the loopback listeners' ports.
const (
	envLoop4Port = "KEYGATE_BPFTEST_LOOP4"
	envLoop6Port = "KEYGATE_BPFTEST_LOOP6"
)

// childMain enters the network namespace passed as fd 3 and runs mode's
// socket operations, one JSON childResult per line on stdout. All of it
// runs on this locked thread, so every socket is in that namespace.
func childMain(mode string) int {
	runtime.LockOSThread()
	if err := unix.Setns(3, unix.CLONE_NEWNET); err != nil {
		fmt.Fprintln(os.Stderr, "child: enter netns:", err)
		return 2
	}

	var results []childResult
	switch mode {
	case childSockets:
		results = socketBattery()
	case childConnect:
		results = []childResult{tcpOp("tcp4", unix.AF_INET, "198.51.100.7:443")}
	case childDenied:
		results = deniedBattery()
	case childTCP6:
		results = []childResult{tcpOp("tcp6", unix.AF_INET6, "[2001:db8::7]:443")}
	case childFlood:
		results = []childResult{floodOp("flood", floodCount, "198.51.100.7:9999")}
	default:
		fmt.Fprintln(os.Stderr, "child: unknown mode", mode)
		return 2
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range results {
		enc.Encode(r)
	}
	return 0
}

func socketBattery() []childResult {
	loop4, loop6 := os.Getenv(envLoop4Port), os.Getenv(envLoop6Port)
	return []childResult{
		tcpOp("tcp4", unix.AF_INET, "198.51.100.7:443"),
		tcpOp("tcp6", unix.AF_INET6, "[2001:db8::7]:443"),
		tcpOp("tcp6 v4-mapped", unix.AF_INET6, "[::ffff:198.51.100.7]:443"),
		tcpOp("tcp4 loopback", unix.AF_INET, "127.0.0.1:"+loop4),
		tcpOp("tcp6 loopback", unix.AF_INET6, "[::1]:"+loop6),
		udpOp("udp4 dns", unix.AF_INET, "198.51.100.7:53", false),
		udpOp("udp4 connected dns", unix.AF_INET, "198.51.100.7:53", true),
		udpOp("udp4 other", unix.AF_INET, "198.51.100.7:9999", false),
		udpOp("udp4 connected other", unix.AF_INET, "198.51.100.7:9999", true),
		udpOp("udp6 dns", unix.AF_INET6, "[2001:db8::53]:53", false),
		udpOp("udp6 v4-mapped dns", unix.AF_INET6, "[::ffff:198.51.100.7]:53", false),
		udpOp("udp6 other", unix.AF_INET6, "[2001:db8::7]:9999", false),
		rawOp("raw icmp4", unix.AF_INET, unix.IPPROTO_ICMP, testService4),
		rawOp("raw icmp6", unix.AF_INET6, unix.IPPROTO_ICMPV6, testService6),
	}
}

// deniedBattery is one of each refusal the cgroup programs report, in the
// order of TestDenyEventsCgroup's expectations.
func deniedBattery() []childResult {
	return []childResult{
		udpOp("udp4 other", unix.AF_INET, "198.51.100.7:9999", false),
		udpOp("udp4 connected other", unix.AF_INET, "198.51.100.7:9999", true),
		udpOp("udp6 other", unix.AF_INET6, "[2001:db8::7]:9999", false),
		pingOp("ping4", unix.AF_INET, unix.IPPROTO_ICMP, "198.51.100.7:0"),
		pingOp("ping6", unix.AF_INET6, unix.IPPROTO_ICMPV6, "[2001:db8::7]:0"),
		rawOp("raw icmp4", unix.AF_INET, unix.IPPROTO_ICMP, testService4),
		rawOp("raw icmp6", unix.AF_INET6, unix.IPPROTO_ICMPV6, testService6),
	}
}

// tcpOp connects a family socket to dst, reports getpeername, writes dst
// on a line for the listener (which answers once it has looked the
// connection up) and waits for that answer.
func tcpOp(name string, family int, dst string) childResult {
	r := childResult{Name: name}
	fd, err := socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return r.fail(err)
	}
	defer unix.Close(fd)

	if err := unix.Connect(fd, sockaddr(family, dst)); err != nil {
		return r.fail(err)
	}
	if r.Peer, err = peerName(fd); err != nil {
		return r.fail(err)
	}
	if _, err := unix.Write(fd, []byte(dst+"\n")); err != nil {
		return r.fail(err)
	}
	buf := make([]byte, 16)
	if n, err := unix.Read(fd, buf); err != nil || n == 0 {
		return r.fail(fmt.Errorf("no answer from the listener: %v", err))
	}
	return r
}

// udpOp sends a datagram to dst, from a connected socket if connect is
// set, and reports where the echoed reply came from.
func udpOp(name string, family int, dst string, connect bool) childResult {
	r := childResult{Name: name}
	fd, err := socket(family, unix.SOCK_DGRAM, 0)
	if err != nil {
		return r.fail(err)
	}
	defer unix.Close(fd)

	sa, msg := sockaddr(family, dst), []byte("query for "+dst)
	if connect {
		if err := unix.Connect(fd, sa); err != nil {
			return r.fail(err)
		}
		if r.Peer, err = peerName(fd); err != nil {
			return r.fail(err)
		}
		_, err = unix.Write(fd, msg)
	} else {
		err = unix.Sendto(fd, msg, 0, sa)
	}
	if err != nil {
		return r.fail(err)
	}

	buf := make([]byte, 512)
	n, from, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return r.fail(err)
	}
	if string(buf[:n]) != string(msg) {
		return r.fail(fmt.Errorf("reply %q, want %q", buf[:n], msg))
	}
	r.From = sockaddrString(from)
	return r
}

// rawOp sends an ICMP echo request to dst from a raw socket, which no
// socket hook sees: only the cgroup_skb filter stands in its way.
func rawOp(name string, family, proto int, dst string) childResult {
	r := childResult{Name: name}
	fd, err := socket(family, unix.SOCK_RAW, proto)
	if err != nil {
		return r.fail(err)
	}
	defer unix.Close(fd)

	echo := []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0} // type 8, checksummed
	if family == unix.AF_INET6 {
		echo = []byte{128, 0, 0, 0, 0, 0, 0, 0} // the kernel checksums ICMPv6
	}
	if err := unix.Sendto(fd, echo, 0, sockaddr(family, net0(dst))); err != nil {
		return r.fail(err)
	}
	return r
}

// pingOp connects an ICMP datagram ("ping") socket to dst. It needs the
// namespace's net.ipv4.ping_group_range to include the child's group.
func pingOp(name string, family, proto int, dst string) childResult {
	r := childResult{Name: name}
	fd, err := socket(family, unix.SOCK_DGRAM, proto)
	if err != nil {
		return r.fail(err)
	}
	defer unix.Close(fd)

	if err := unix.Connect(fd, sockaddr(family, dst)); err != nil {
		return r.fail(err)
	}
	return r
}

// floodOp sends n datagrams to dst from one UDP socket and reports the
// error of the first send that did not fail EPERM, or EPERM.
func floodOp(name string, n int, dst string) childResult {
	r := childResult{Name: name}
	fd, err := socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return r.fail(err)
	}
	defer unix.Close(fd)

	sa := sockaddr(unix.AF_INET, dst)
	for i := range n {
		err := unix.Sendto(fd, []byte("flood"), 0, sa)
		if err != unix.EPERM {
			return r.fail(fmt.Errorf("send %d: %v", i, err))
		}
	}
	return r.fail(unix.EPERM)
}

// net0 makes an address with port 0 for a raw socket.
func net0(addr string) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), 0).String()
}

// socket opens a socket whose reads give up after five seconds.
func socket(family, typ, proto int) (int, error) {
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// sockaddr turns "addr:port" into a socket address of family; an AF_INET6
// address for an IPv4 destination is v4-mapped.
func sockaddr(family int, s string) unix.Sockaddr {
	ap := netip.MustParseAddrPort(s)
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// sockaddrString formats sa as "addr:port", keeping v4-mapped addresses
// v4-mapped.
func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprintf("%T", sa)
}

func peerName(fd int) (string, error) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return "", err
	}
	return sockaddrString(sa), nil
}

func (r childResult) fail(err error) childResult {
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.Err = unix.ErrnoName(errno)
	} else {
		r.Err = err.Error()
	}
	return r
}

// parseChild decodes a child's output by operation name.
func parseChild(t *testing.T, out []byte) map[string]childResult {
	t.Helper()
	res := make(map[string]childResult)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r childResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("child output %q: %v", sc.Text(), err)
		}
		res[r.Name] = r
	}
	return res
}

// portOf returns the port of a listener's address as a string.
func portOf(addr netip.AddrPort) string { return strconv.Itoa(int(addr.Port())) }
