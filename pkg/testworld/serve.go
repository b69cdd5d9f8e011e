package testworld

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// listeners are the world's sockets. They are opened inside the world's
// namespace and keep belonging to it whichever goroutine later serves them.
type listeners struct {
	dnsUDP  []*net.UDPConn
	dnsTCP  []net.Listener
	https   map[string][]net.Listener // by world host name
	http    map[string][]net.Listener // plain HTTP, by the name requests are filed under
	udpSink []*net.UDPConn
	tcpSink []net.Listener
}

// open creates every listener. It must run inside the world's namespace.
func (ls *listeners) open(w *World) error {
	for _, ap := range []netip.AddrPort{w.DNS, w.DNS6} {
		if !ap.IsValid() {
			continue
		}
		udp, err := listenUDP(ap)
		if err != nil {
			return err
		}
		ls.dnsUDP = append(ls.dnsUDP, udp)
		tcp, err := listenTCP(ap)
		if err != nil {
			return err
		}
		ls.dnsTCP = append(ls.dnsTCP, tcp)
	}

	ls.https = make(map[string][]net.Listener)
	for host, addrs := range w.serverAddrs() {
		if err := ls.openTCP(ls.https, host, addrs, 443); err != nil {
			return err
		}
	}
	ls.http = make(map[string][]net.Listener)
	attacker := validAddrs(w.Attacker, w.Attacker6)
	if err := ls.openTCP(ls.http, w.AttackerHost(), attacker, 80); err != nil {
		return err
	}
	if err := ls.openTCP(ls.http, metadataServer, validAddrs(w.Metadata), 80); err != nil {
		return err
	}

	for _, ap := range w.sinkAddrs(attackerUDPPorts) {
		conn, err := listenUDP(ap)
		if err != nil {
			return err
		}
		ls.udpSink = append(ls.udpSink, conn)
	}
	for _, ap := range w.sinkAddrs(attackerTCPPorts) {
		ln, err := listenTCP(ap)
		if err != nil {
			return err
		}
		ls.tcpSink = append(ls.tcpSink, ln)
	}
	return nil
}

// openTCP adds a TCP listener on port of each of addrs to m[name].
func (ls *listeners) openTCP(
	m map[string][]net.Listener, name string, addrs []netip.Addr, port uint16,
) error {
	for _, a := range addrs {
		ln, err := listenTCP(netip.AddrPortFrom(a, port))
		if err != nil {
			return err
		}
		m[name] = append(m[name], ln)
	}
	return nil
}

// sinkAddrs returns where sinks listen: ports on each attacker address, and
// port 53 of the stray DNS server if the world has one.
func (w *World) sinkAddrs(ports []uint16) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range validAddrs(w.Attacker, w.Attacker6) {
		for _, port := range ports {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	if w.StrayDNS.IsValid() {
		out = append(out, netip.AddrPortFrom(w.StrayDNS, 53))
	}
	return out
}

// listenUDP and listenTCP bind a socket to one world address, so each world
// host answers only on its own address.
func listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	conn, err := net.ListenUDP(family("udp", ap), net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", ap, err)
	}
	return conn, nil
}

func listenTCP(ap netip.AddrPort) (net.Listener, error) {
	ln, err := net.ListenTCP(family("tcp", ap), net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", ap, err)
	}
	return ln, nil
}

// family returns "udp4" or "udp6" (for proto "udp") as ap is IPv4 or IPv6.
func family(proto string, ap netip.AddrPort) string {
	if ap.Addr().Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// close closes every listener opened so far. It is the safety net for a
// Start that fails before the servers own them; closing twice is harmless.
func (ls *listeners) close() {
	var all []interface{ Close() error }
	for _, c := range ls.dnsUDP {
		all = append(all, c)
	}
	for _, ln := range ls.dnsTCP {
		all = append(all, ln)
	}
	for _, m := range []map[string][]net.Listener{ls.https, ls.http} {
		for _, lns := range m {
			for _, ln := range lns {
				all = append(all, ln)
			}
		}
	}
	for _, c := range ls.udpSink {
		all = append(all, c)
	}
	for _, ln := range ls.tcpSink {
		all = append(all, ln)
	}
	for _, c := range all {
		_ = c.Close()
	}
}

// serve starts a server on every listener. Each server's shutdown is added
// to w.stop as soon as it runs, so Close stops whatever did start.
func (w *World) serve(ls *listeners, ca *authority) error {
	w.ls = ls

	for host, addrs := range w.serverAddrs() {
		names := []string{host}
		if host == w.APIHost() {
			names = append(names, "alias."+w.Zone)
			if w.API6.IsValid() {
				names = append(names, w.API6Host())
			}
		}
		cert, err := ca.issue(names, addrs)
		if err != nil {
			return err
		}
		for _, ln := range ls.https[host] {
			w.serveHTTP(newHTTPServer(w.handler(host, ln), &cert), ln)
		}
	}
	for server, lns := range ls.http {
		for _, ln := range lns {
			w.serveHTTP(newHTTPServer(w.handler(server, ln), nil), ln)
		}
	}

	for _, conn := range ls.udpSink {
		w.serveUDPSink(conn)
	}
	for _, ln := range ls.tcpSink {
		w.serveTCPSink(ln)
	}

	handler := &dnsHandler{zone: w.zone, rec: w.rec}
	var errs []error
	for _, conn := range ls.dnsUDP {
		errs = append(errs, w.serveDNS(&dns.Server{PacketConn: conn, Handler: handler}))
	}
	for _, ln := range ls.dnsTCP {
		errs = append(errs, w.serveDNS(&dns.Server{Listener: ln, Handler: handler}))
	}
	return errors.Join(errs...)
}

// handler returns the recording handler for server's listener ln. At API6 the
// API also serves api6.<zone>, and files requests for that name under it.
func (w *World) handler(server string, ln net.Listener) *recordingHandler {
	h := &recordingHandler{server: server, dst: addrPortOf(ln.Addr()), rec: w.rec}
	if server == w.APIHost() && w.API6.IsValid() && h.dst.Addr() == w.API6 {
		h.sniServer = w.API6Host()
	}
	return h
}

// noteServeError keeps an unexpected server failure for Close to report.
func (w *World) noteServeError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serveErrs = append(w.serveErrs, err)
}

// takeServeErrors returns the failures noted so far.
func (w *World) takeServeErrors() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.serveErrs...)
}
