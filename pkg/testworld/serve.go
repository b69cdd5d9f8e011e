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
	dnsUDP  *net.UDPConn
	dnsTCP  net.Listener
	https   map[string]net.Listener // by world host name
	http    net.Listener            // attacker, plain HTTP
	udpSink []*net.UDPConn
	tcpSink []net.Listener
}

// open creates every listener. It must run inside the world's namespace.
func (ls *listeners) open(w *World) error {
	var err error
	if ls.dnsUDP, err = listenUDP(w.DNS); err != nil {
		return err
	}
	if ls.dnsTCP, err = listenTCP(w.DNS); err != nil {
		return err
	}

	ls.https = make(map[string]net.Listener)
	for host, addr := range w.serverNames() {
		if ls.https[host], err = listenTCP(netip.AddrPortFrom(addr, 443)); err != nil {
			return err
		}
	}
	if ls.http, err = listenTCP(netip.AddrPortFrom(w.Attacker, 80)); err != nil {
		return err
	}

	for _, port := range attackerUDPPorts {
		conn, err := listenUDP(netip.AddrPortFrom(w.Attacker, port))
		if err != nil {
			return err
		}
		ls.udpSink = append(ls.udpSink, conn)
	}
	for _, port := range attackerTCPPorts {
		ln, err := listenTCP(netip.AddrPortFrom(w.Attacker, port))
		if err != nil {
			return err
		}
		ls.tcpSink = append(ls.tcpSink, ln)
	}
	return nil
}

// listenUDP and listenTCP bind IPv4 sockets to one world address, so each
// world host answers only on its own address.
func listenUDP(ap netip.AddrPort) (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", ap, err)
	}
	return conn, nil
}

func listenTCP(ap netip.AddrPort) (net.Listener, error) {
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("listen tcp %s: %w", ap, err)
	}
	return ln, nil
}

// close closes every listener opened so far. It is the safety net for a
// Start that fails before the servers own them; closing twice is harmless.
func (ls *listeners) close() {
	var all []interface{ Close() error }
	if ls.dnsUDP != nil {
		all = append(all, ls.dnsUDP)
	}
	if ls.dnsTCP != nil {
		all = append(all, ls.dnsTCP)
	}
	for _, ln := range ls.https {
		all = append(all, ln)
	}
	if ls.http != nil {
		all = append(all, ls.http)
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

	for host, addr := range w.serverNames() {
		names := []string{host}
		if host == w.APIHost() {
			names = append(names, "alias."+w.Zone)
		}
		cert, err := ca.issue(names, []netip.Addr{addr})
		if err != nil {
			return err
		}
		w.serveHTTP(newHTTPServer(host, w.rec, &cert), ls.https[host])
	}
	w.serveHTTP(newHTTPServer(w.AttackerHost(), w.rec, nil), ls.http)

	for _, conn := range ls.udpSink {
		w.serveUDPSink(conn)
	}
	for _, ln := range ls.tcpSink {
		w.serveTCPSink(ln)
	}

	handler := &dnsHandler{zone: w.zone, rec: w.rec}
	udp := &dns.Server{PacketConn: ls.dnsUDP, Handler: handler}
	tcp := &dns.Server{Listener: ls.dnsTCP, Handler: handler}
	return errors.Join(w.serveDNS(udp), w.serveDNS(tcp))
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
