//go:build linux

package bpf

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/pkg/tproxy"
)

// steerWorld is a sandbox namespace joined by a veth to a host namespace
// that plays the agent: service addresses on its loopback, transparent
// listeners, policy routing for SteerMark, and the guard and steering
// program on its veth end in tc mode. Nothing of it is in the test's own
// namespace, so the host's routing is never touched.
type steerWorld struct {
	hostNS, sandboxNS netns.NsHandle
	name              string // host end, kgst*
	ifindex           int    // host end, in hostNS
	pinDir            string
	guard             *Guard
	socks             testSteerSockets
	accepted          chan acceptedConn
}

// acceptedConn is what the stand-in proxy saw of a connection.
type acceptedConn struct {
	local, remote netip.AddrPort
}

// Ports of the stand-in world that make the proxy behave differently.
const (
	echoPort  = 443  // echoes what it reads
	sinkPort  = 9000 // reads and discards
	closePort = 7000 // closes at once, so its side goes to TIME_WAIT
	hostPort  = 7001 // likewise, and a host service listens on it too
)

func newSteerWorld(t *testing.T) *steerWorld {
	t.Helper()
	w := &steerWorld{hostNS: testutil.NewNetNS(t), sandboxNS: testutil.NewNetNS(t), name: randName("kgst")}
	addAddr(t, w.hostNS, "lo", steerService4+"/32")
	addAddr(t, w.hostNS, "lo", steerService6+"/128")
	w.ifindex = newVeth(t, w.hostNS, w.sandboxNS, w.name)

	var undo func() error
	var err error
	testutil.InNetNS(t, w.hostNS, func() {
		// As pkg/netns sets up a sandbox's host end.
		for key, val := range map[string]string{"forwarding": "0", "rp_filter": "1"} {
			path := filepath.Join("/proc/sys/net/ipv4/conf", w.name, key)
			if err = os.WriteFile(path, []byte(val), 0); err != nil {
				return
			}
		}
		undo, err = tproxy.Install(SteerMark, SteerTable)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := undo(); err != nil {
			t.Errorf("remove policy routing: %v", err)
		}
	})

	w.pinDir = steerPinDir(t)
	w.start(t)
	return w
}

// start plays an agent starting up, in the order an agent must follow:
// listeners, then sockets into the sockmap, then (done once, in
// newSteerWorld) routing, then attaching.
func (w *steerWorld) start(t *testing.T) {
	t.Helper()
	cfg := steerGuardConfig
	cfg.PinDir = w.pinDir
	w.guard = loadGuardIn(t, w.hostNS, cfg)
	t.Cleanup(func() { w.guard.Unpin() })
	w.socks = setTestSteerSockets(t, w.guard, w.hostNS)
	w.accepted = make(chan acceptedConn, 16)
	for _, ln := range []*net.TCPListener{w.socks.Proxy4, w.socks.Proxy6} {
		go serveProxy(ln, w.accepted)
	}
	serveDNS(t, w.socks)

	var err error
	testutil.InNetNS(t, w.hostNS, func() { err = w.guard.Attach(w.ifindex, steerVeth) })
	if err != nil {
		t.Fatal(err)
	}
}

// newVeth joins hostNS and sandboxNS with a veth called name on the host
// side, addresses them as steerVeth says, routes the sandbox through the
// host end, and returns the host end's index.
func newVeth(t *testing.T, hostNS, sandboxNS netns.NsHandle, name string) int {
	t.Helper()
	h := nlHandle(t, hostNS)
	peer := name + "s"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer,
		PeerNamespace: netlink.NsFd(int(sandboxNS))}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	addAddr(t, hostNS, name, steerHost4+"/24")
	addAddr(t, hostNS, name, steerHost6+"/64")
	addAddr(t, sandboxNS, peer, steerSandbox4+"/24")
	addAddr(t, sandboxNS, peer, steerSandbox6+"/64")

	host, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	sh := nlHandle(t, sandboxNS)
	sb, err := sh.LinkByName(peer)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.LinkSetUp(sb); err != nil {
		t.Fatal(err)
	}
	for _, gw := range []string{steerHost4, steerHost6} {
		r := &netlink.Route{LinkIndex: sb.Attrs().Index, Gw: net.ParseIP(gw)}
		if err := sh.RouteAdd(r); err != nil {
			t.Fatalf("route via %s: %v", gw, err)
		}
	}
	return host.Attrs().Index
}

// steerPinDir returns a fresh pin directory for the steering tests,
// removed when t ends if the test left it behind.
func steerPinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(bpffsRoot, randName("keygate-steertest-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// serveProxy accepts connections on ln until it is closed, reports each,
// and echoes or swallows what the sandbox sends, by the port it dialled.
func serveProxy(ln *net.TCPListener, accepted chan<- acceptedConn) {
	for {
		conn, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
		accepted <- acceptedConn{local: local, remote: conn.RemoteAddr().(*net.TCPAddr).AddrPort()}
		go func() {
			defer conn.Close()
			switch local.Port() {
			case closePort, hostPort:
				return
			case sinkPort:
				io.Copy(io.Discard, conn)
				conn.Write([]byte("done"))
			default:
				io.Copy(conn, conn)
			}
		}()
	}
}

// serveDNS answers every query on the resolver's sockets with an A record,
// through miekg/dns as the agent's resolver does.
func serveDNS(t *testing.T, s testSteerSockets) {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET,
				Ttl: 60},
			A: net.IPv4(192, 0, 2, 1),
		})
		w.WriteMsg(m)
	})
	servers := []*dns.Server{
		{PacketConn: s.DNSUDP4, Handler: handler}, {PacketConn: s.DNSUDP6, Handler: handler},
		{Listener: s.DNSTCP4, Handler: handler}, {Listener: s.DNSTCP6, Handler: handler},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
}

// dial connects from the sandbox to addr.
func (w *steerWorld) dial(t *testing.T, network, addr string, timeout time.Duration) (net.Conn,
	error) {
	t.Helper()
	var conn net.Conn
	var err error
	testutil.InNetNS(t, w.sandboxNS, func() { conn, err = net.DialTimeout(network, addr, timeout) })
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

// connect dials addr from the sandbox and returns the connection and what
// the proxy saw of it.
func (w *steerWorld) connect(t *testing.T, addr string) (net.Conn, acceptedConn) {
	t.Helper()
	conn, err := w.dial(t, "tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	select {
	case a := <-w.accepted:
		return conn, a
	case <-time.After(5 * time.Second):
		t.Fatalf("connected to %s, but the proxy accepted nothing", addr)
	}
	panic("unreachable")
}

// counters returns the steering counters.
func (w *steerWorld) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	return mustCounters(t, w.guard.SteerCounters)
}

// waitCounter waits until counter has gone up by at least n since before.
func (w *steerWorld) waitCounter(t *testing.T, before map[string]uint64, counter string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := w.counters(t)[counter] - before[counter]
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s went up by %d, want %d", counter, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSteerVeth sends a sandbox's traffic through a veth in tc mode: TCP
// to anywhere reaches the proxy's transparent listener with the dialled
// address as its local address, DNS to any server reaches the resolver
// and its answer comes back from that server's address, and everything
// else is dropped and counted.
func TestSteerVeth(t *testing.T) {
	testutil.RequireRoot(t)
	w := newSteerWorld(t)

	for _, dst := range []string{"198.51.100.9:443", "[2001:db8::9]:443"} {
		t.Run("TCP "+dst, func(t *testing.T) {
			before := w.counters(t)
			conn, a := w.connect(t, dst)
			if a.local != netip.MustParseAddrPort(dst) {
				t.Errorf("proxy's local address %s, want %s", a.local, dst)
			}
			if sb := a.remote.Addr(); sb != steerVeth.Sandbox4 && sb != steerVeth.Sandbox6 {
				t.Errorf("proxy's peer %s, want the sandbox's address", a.remote)
			}
			echo(t, conn, 1<<20)
			after := w.counters(t)
			if after["steer_tcp_new"]-before["steer_tcp_new"] != 1 {
				t.Errorf("steer_tcp_new went up by %d, want 1",
					after["steer_tcp_new"]-before["steer_tcp_new"])
			}
			if after["steer_tcp_established"]-before["steer_tcp_established"] < 10 {
				t.Errorf("steer_tcp_established went up by %d for 1 MiB",
					after["steer_tcp_established"]-before["steer_tcp_established"])
			}
		})
	}

	// A write much larger than the MTU leaves the sandbox's TCP stack as
	// GSO packets of up to 64 KiB (the veth does TSO), each assigned whole.
	for _, dst := range []string{"198.51.100.9:9000", "[2001:db8::9]:9000"} {
		t.Run("GSO "+dst, func(t *testing.T) {
			conn, _ := w.connect(t, dst)
			before := w.counters(t)
			const size = 8 << 20
			if _, err := conn.Write(make([]byte, size)); err != nil {
				t.Fatal(err)
			}
			conn.(*net.TCPConn).CloseWrite()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if reply, err := io.ReadAll(conn); err != nil || string(reply) != "done" {
				t.Fatalf("proxy's answer %q, %v", reply, err)
			}
			n := w.counters(t)["steer_tcp_established"] - before["steer_tcp_established"]
			t.Logf("%d MiB in %d packets, %d bytes each on average", size>>20, n, size/max(n, 1))
			if n == 0 || size/n <= 2*1500 {
				t.Errorf("%d packets for %d bytes: no GSO packets were steered", n, size)
			}
		})
	}

	// A SYN for the 4-tuple of a connection the proxy closed, which is in
	// TIME_WAIT on the host, must reach the listener again, and never a
	// host service that listens on its port.
	t.Run("TCP SYN to a tuple in TIME_WAIT", func(t *testing.T) {
		local := w.closedByProxy(t, "198.51.100.9:7000")
		before := w.counters(t)
		start := time.Now()
		conn, err := w.redial(t, local, "198.51.100.9:7000", 5*time.Second)
		if err != nil {
			t.Fatalf("reconnect from %s: %v", local, err)
		}
		conn.Close()
		t.Logf("reconnected in %v", time.Since(start).Round(time.Millisecond))
		if a := <-w.accepted; a.remote.Port() != uint16(local.Port) {
			t.Errorf("proxy accepted %s, want the reused port %d", a.remote, local.Port)
		}
		w.waitCounter(t, before, "steer_tcp_time_wait", 1)
	})
	t.Run("TCP SYN to a tuple in TIME_WAIT, host service on the port", func(t *testing.T) {
		host := listen(t, w.hostNS, "tcp4", "0.0.0.0:7001")
		hostAccepted := make(chan net.Addr, 1)
		go func() {
			if conn, err := host.Accept(); err == nil {
				hostAccepted <- conn.RemoteAddr()
				conn.Close()
			}
		}()
		local := w.closedByProxy(t, "198.51.100.9:7001")
		before := w.counters(t)
		if _, err := w.redial(t, local, "198.51.100.9:7001", 500*time.Millisecond); err == nil {
			t.Error("reconnected while the tuple is in TIME_WAIT")
		}
		w.waitCounter(t, before, "steer_drop_time_wait", 1)
		select {
		case from := <-hostAccepted:
			t.Errorf("the host's service accepted %s", from)
		default:
		}
	})

	for _, tc := range []struct{ name, net, server string }{
		{"DNS over UDP", "udp", "198.51.100.53:53"},
		{"DNS over TCP", "tcp", "198.51.100.53:53"},
		{"DNS over UDP, IPv6", "udp", "[2001:db8::53]:53"},
		{"DNS over TCP, IPv6", "tcp", "[2001:db8::53]:53"},
		// The same sockets serve a sandbox that asks the resolver itself,
		// as a cgroup-mode sandbox's queries arrive.
		{"DNS to the resolver's own address", "udp", w.socks.dns4.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := w.counters(t)
			w.query(t, tc.net, tc.server)
			reason := "steer_dns_udp"
			switch {
			case tc.server == w.socks.dns4.String():
				reason = "steer_next_service"
			case tc.net == "tcp":
				reason = "steer_dns_tcp"
			}
			w.waitCounter(t, before, reason, 1)
		})
	}

	t.Run("dropped", func(t *testing.T) {
		before := w.counters(t)
		testutil.InNetNS(t, w.sandboxNS, func() {
			for _, dst := range []string{"198.51.100.9:9999", "[2001:db8::9]:443"} {
				conn, err := net.Dial("udp", dst)
				if err != nil {
					t.Fatal(err)
				}
				conn.Write([]byte("not DNS"))
				conn.Close()
			}
			for _, r := range []childResult{
				rawOp("ping", unix.AF_INET, unix.IPPROTO_ICMP, "198.51.100.9"),
				rawOp("ping6", unix.AF_INET6, unix.IPPROTO_ICMPV6, "2001:db8::9"),
			} {
				if r.Err != "" {
					t.Errorf("%s: %s", r.Name, r.Err)
				}
			}
		})
		w.waitCounter(t, before, "steer_drop_udp", 2)
		w.waitCounter(t, before, "steer_drop_icmp", 2)
	})
}

// closedByProxy connects to dst, where the proxy closes at once, waits
// for the close and returns the sandbox's address of the connection, whose
// tuple is then in TIME_WAIT on the host.
func (w *steerWorld) closedByProxy(t *testing.T, dst string) *net.TCPAddr {
	t.Helper()
	conn, _ := w.connect(t, dst)
	local := conn.LocalAddr().(*net.TCPAddr)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read from a closing proxy: %v", err)
	}
	conn.Close()
	return local
}

// redial connects to dst from local again, once the sandbox's own socket
// of the last connection from there is gone.
func (w *steerWorld) redial(t *testing.T, local *net.TCPAddr, dst string,
	timeout time.Duration) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: timeout}
	var conn net.Conn
	var err error
	for range 50 {
		testutil.InNetNS(t, w.sandboxNS, func() { conn, err = d.Dial("tcp", dst) })
		if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return conn, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

// echo sends n random bytes over conn, to a proxy that echoes them, and
// checks that the same bytes come back: n bytes each way at once.
func echo(t *testing.T, conn net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		errc <- err
	}()
	got := make([]byte, n)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("read the echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the echo differs from what was sent")
	}
}

// query asks server for an A record from the sandbox, with miekg/dns's
// client: over UDP it uses a connected socket, which takes a reply only
// from the address it sent to.
func (w *steerWorld) query(t *testing.T, network, server string) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("api.example.com.", dns.TypeA)
	var r *dns.Msg
	var err error
	testutil.InNetNS(t, w.sandboxNS, func() { r, _, err = c.Exchange(q, server) })
	if err != nil {
		t.Fatalf("query %s over %s: %v", server, network, err)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer from %s: %v", server, r)
	}
}

// TestPinnedSteer checks that steering outlives the agent that attached
// it, fails closed while no agent has sockets in the sockmap, and is taken
// over by the next agent, which refills the sockmap; and that changing a
// veth to cgroup mode, Detach and Unpin remove it.
func TestPinnedSteer(t *testing.T) {
	testutil.RequireRoot(t)
	w := newSteerWorld(t)
	order := func() []ebpf.ProgramID {
		return tcxProgs(t, w.hostNS, w.ifindex)
	}
	firstSteer, firstGuard := w.guard.steerProgID(t), w.guard.progID(t)
	if got := order(); !slices.Equal(got, []ebpf.ProgramID{firstSteer, firstGuard}) {
		t.Fatalf("attached %v, want steer %d then guard %d", got, firstSteer, firstGuard)
	}
	w.connect(t, "198.51.100.9:443")

	// The agent dies: its sockets close, the kernel empties the sockmap,
	// and the pinned programs stay, failing closed.
	if err := w.guard.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []io.Closer{w.socks.Proxy4, w.socks.Proxy6, w.socks.DNSTCP4,
		w.socks.DNSTCP6, w.socks.DNSUDP4, w.socks.DNSUDP6} {
		c.Close()
	}
	if got := order(); !slices.Equal(got, []ebpf.ProgramID{firstSteer, firstGuard}) {
		t.Fatalf("after Close: attached %v, want the first agent's", got)
	}
	cfg := steerGuardConfig
	cfg.PinDir = w.pinDir
	watcher := loadGuardIn(t, w.hostNS, cfg) // reads the pinned counters
	before := mustCounters(t, watcher.SteerCounters)
	if _, err := w.dial(t, "tcp", "198.51.100.9:443", 300*time.Millisecond); err == nil {
		t.Fatal("connected with no agent running")
	}
	if n := mustCounters(t, watcher.SteerCounters)["steer_no_listener"] -
		before["steer_no_listener"]; n == 0 {
		t.Error("steer_no_listener did not go up")
	}

	// The next agent: new sockets into the same sockmap, programs
	// updated in place.
	w.start(t)
	second := []ebpf.ProgramID{w.guard.steerProgID(t), w.guard.progID(t)}
	if got := order(); !slices.Equal(got, second) {
		t.Fatalf("after takeover: attached %v, want the second agent's %v", got, second)
	}
	_, a := w.connect(t, "[2001:db8::9]:443")
	if a.local != netip.MustParseAddrPort("[2001:db8::9]:443") {
		t.Errorf("after takeover: proxy's local address %s", a.local)
	}

	cgroupVeth := steerVeth
	cgroupVeth.Mode = CaptureCgroup
	var err error
	testutil.InNetNS(t, w.hostNS, func() { err = w.guard.Attach(w.ifindex, cgroupVeth) })
	if err != nil {
		t.Fatal(err)
	}
	if got := order(); !slices.Equal(got, second[1:]) {
		t.Errorf("in cgroup mode: attached %v, want only the guard", got)
	}
	if _, err := os.Stat(filepath.Join(w.pinDir, steerPinPrefix+w.name)); !errors.Is(err,
		os.ErrNotExist) {
		t.Errorf("in cgroup mode: steering pin: %v, want it gone", err)
	}

	testutil.InNetNS(t, w.hostNS, func() { err = w.guard.Attach(w.ifindex, steerVeth) })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.guard.Detach(w.ifindex); err != nil {
		t.Fatal(err)
	}
	if got := order(); len(got) != 0 {
		t.Errorf("after Detach: attached %v, want nothing", got)
	}
	watcher.Close()
	if err := w.guard.Unpin(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.pinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Unpin: pin directory: %v, want it gone", err)
	}
}

func (g *Guard) steerProgID(t *testing.T) ebpf.ProgramID {
	t.Helper()
	info, err := g.objs.KgSteerIngress.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}
