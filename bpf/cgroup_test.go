//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/testutil"
)

// acceptance is what a test listener learnt about one connection.
type acceptance struct {
	listener string  // the listener's address
	dialled  string  // what the client says it dialled
	orig     OrigDst // TakeConn's answer
	err      error   // TakeConn's error
}

// serveTCP accepts connections on ln until it is closed, looks each one
// up with TakeConn, reads the line the client sends and answers it.
func serveTCP(c *CgroupCapture, ln net.Listener, out chan<- acceptance) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		a := acceptance{listener: ln.Addr().String()}
		a.orig, a.err = c.TakeConn(conn.RemoteAddr().(*net.TCPAddr).AddrPort())
		line, _ := bufio.NewReader(conn).ReadString('\n')
		a.dialled = strings.TrimSpace(line)
		conn.Write([]byte("ok\n"))
		conn.Close()
		out <- a
	}
}

// echoUDP sends every datagram on pc back where it came from, as a test
// resolver.
func echoUDP(pc *net.UDPConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		pc.WriteToUDPAddrPort(buf[:n], from)
	}
}

// TestSocketHooks attaches the cgroup programs to a fresh cgroup and runs
// a child process in it, in a network namespace whose loopback holds the
// test service addresses, and checks what each of the child's socket
// operations came to. Nothing the child dials exists: if capture failed,
// the namespace has no route for it.
func TestSocketHooks(t *testing.T) {
	testutil.RequireRoot(t)
	ns := newServiceNetNS(t)
	parent, child := testCgroups(t)
	childID, err := CgroupID(child)
	if err != nil {
		t.Fatal(err)
	}

	c, err := LoadCgroup(testCgroupConfig)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Attach(parent); err != nil {
		t.Fatal(err)
	}

	proxy4 := listen(t, ns, "tcp4", testCgroupConfig.Proxy.String())
	proxy6 := listen(t, ns, "tcp6", testCgroupConfig.Proxy6.String())
	loop4 := listen(t, ns, "tcp4", "127.0.0.1:0")
	loop6 := listen(t, ns, "tcp6", "[::1]:0")
	accepted := make(chan acceptance, 16)
	for _, ln := range []net.Listener{proxy4, proxy6, loop4, loop6} {
		go serveTCP(c, ln, accepted)
	}
	go echoUDP(listenUDP(t, ns, "udp4", testCgroupConfig.Resolver.String()))
	go echoUDP(listenUDP(t, ns, "udp6", testCgroupConfig.Resolver6.String()))

	loop4Port := portOf(loop4.Addr().(*net.TCPAddr).AddrPort())
	loop6Port := portOf(loop6.Addr().(*net.TCPAddr).AddrPort())
	out := runChild(t, ns, child, childSockets,
		envLoop4Port+"="+loop4Port, envLoop6Port+"="+loop6Port)
	results := parseChild(t, out)

	t.Run("child", func(t *testing.T) {
		for _, want := range []childResult{
			{Name: "tcp4", Peer: "198.51.100.7:443"},
			{Name: "tcp6", Peer: "[2001:db8::7]:443"},
			{Name: "tcp6 v4-mapped", Peer: "[::ffff:198.51.100.7]:443"},
			{Name: "tcp4 loopback", Peer: "127.0.0.1:" + loop4Port},
			{Name: "tcp6 loopback", Peer: "[::1]:" + loop6Port},
			{Name: "udp4 dns", From: "198.51.100.7:53"},
			{Name: "udp4 connected dns", Peer: "198.51.100.7:53", From: "198.51.100.7:53"},
			{Name: "udp4 other", Err: "EPERM"},
			{Name: "udp4 connected other", Err: "EPERM"},
			{Name: "udp6 dns", From: "[2001:db8::53]:53"},
			{Name: "udp6 v4-mapped dns", From: "[::ffff:198.51.100.7]:53"},
			{Name: "udp6 other", Err: "EPERM"},
			{Name: "raw icmp4", Err: "EPERM"},
			{Name: "raw icmp6", Err: "EPERM"},
		} {
			if got := results[want.Name]; got != want {
				t.Errorf("%s: got %+v, want %+v", want.Name, got, want)
			}
		}
	})

	t.Run("TakeConn", func(t *testing.T) {
		got := make(map[string]acceptance)
		for range 5 {
			a := <-accepted
			got[a.dialled] = a
		}
		for _, want := range []acceptance{
			{listener: proxy4.Addr().String(), dialled: "198.51.100.7:443",
				orig: OrigDst{netip.MustParseAddrPort("198.51.100.7:443"), childID}},
			{listener: proxy6.Addr().String(), dialled: "[2001:db8::7]:443",
				orig: OrigDst{netip.MustParseAddrPort("[2001:db8::7]:443"), childID}},
			// Reported as plain IPv4, as the proxy dials it.
			{listener: proxy4.Addr().String(), dialled: "[::ffff:198.51.100.7]:443",
				orig: OrigDst{netip.MustParseAddrPort("198.51.100.7:443"), childID}},
			{listener: loop4.Addr().String(), dialled: "127.0.0.1:" + loop4Port,
				err: ErrUnknownConn},
			{listener: loop6.Addr().String(), dialled: "[::1]:" + loop6Port,
				err: ErrUnknownConn},
		} {
			a := got[want.dialled]
			if a.listener != want.listener || a.orig != want.orig || !errors.Is(a.err, want.err) {
				t.Errorf("%s: accepted %+v, want %+v", want.dialled, a, want)
			}
		}
	})

	t.Run("counters", func(t *testing.T) {
		n, err := c.Counters()
		if err != nil {
			t.Fatal(err)
		}
		for reason, want := range map[string]uint64{
			"tcp_redirect": 1,
			// connect6 redirected both AF_INET6 connects, the v4-mapped one
			// included: connect4 did not run for it.
			"tcp_redirect6": 2,
			"loopback":      1,
			"loopback6":     1,
			// sendmsg4, connect4, and sendmsg4 again for the AF_INET6
			// socket's v4-mapped send: sendmsg6 never saw it.
			"dns_redirect":   3,
			"dns_redirect6":  1,
			"deny_udp":       2,
			"deny_udp6":      1,
			"dns_reply":      2,
			"dns_reply6":     2,
			"peer_restored":  4,
			"conn_published": 3,
			"conn_unknown":   2,
			"sock_forgotten": 7,
		} {
			if n[reason] != want {
				t.Errorf("counter %s = %d, want %d", reason, n[reason], want)
			}
		}
		for _, reason := range []string{"skb_pass_service", "skb_pass_loopback",
			"skb_drop_v4", "skb_drop_v6"} {
			if n[reason] == 0 {
				t.Errorf("counter %s = 0, want more", reason)
			}
		}
		if t.Failed() {
			t.Logf("counters: %v", n)
		}
	})
}
