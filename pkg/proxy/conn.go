package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/keygate/keygate/pkg/domain"
)

// connInfo is what the proxy established about one client connection
// before any HTTP request on it is read.
type connInfo struct {
	sb     Sandbox
	src    netip.AddrPort
	dst    netip.AddrPort // original destination, recovered from the capture maps
	sni    string         // normalised TLS server name
	denial *denial        // set when every request on the connection is refused
}

type connInfoKey struct{}

func infoFrom(ctx context.Context) *connInfo {
	return ctx.Value(connInfoKey{}).(*connInfo)
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*proxyConn); ok {
		return context.WithValue(ctx, connInfoKey{}, pc.info)
	}
	return ctx
}

// proxyConn is a terminated TLS connection with what is known about it.
type proxyConn struct {
	net.Conn
	info      *connInfo
	closed    chan struct{} // closed by the first Close
	closeOnce sync.Once
}

func (c *proxyConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { close(c.closed) })
	return err
}

// bufferedConn reads through a bufio.Reader that already holds bytes
// peeked from the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// handleConn identifies a captured connection, peeks its first bytes and
// ClientHello, decides whether its destination is acceptable, and then
// either splices it to the pinned address (no credential at stake) or
// terminates TLS and serves HTTP/1.1 or HTTP/2 on it. Connections that
// cannot be identified, or that carry no TLS server name, are closed:
// there is nothing to answer them in. Plaintext HTTP gets a 403.
func (p *Proxy) handleConn(c net.Conn, steered bool) {
	start := time.Now()
	src := addrPortOf(c.RemoteAddr())
	var ci *connInfo
	var d *denial
	if steered {
		ci, d = p.identifySteered(src, addrPortOf(c.LocalAddr()))
	} else {
		ci, d = p.identify(src)
	}
	if d != nil {
		p.decide(connDecision(nil, src, d, start))
		c.Close()
		return
	}
	if !p.admit(c, ci.sb.ID()) {
		d := deny(ReasonTooManyConns, "sandbox %s is at its cap of %d connections", ci.sb.ID(), p.cfg.MaxConnsPerSandbox)
		p.decide(connDecision(ci, src, d, start))
		c.Close()
		return
	}
	defer p.release(c, ci.sb.ID())

	c.SetDeadline(start.Add(p.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(c, 4096)
	if looksLikeHTTP(br) {
		p.refusePlaintext(ci, c, br, start)
		return
	}
	hello, rc, err := peekClientHello(&bufferedConn{Conn: c, r: br})
	if err != nil {
		p.decide(connDecision(ci, src, deny(ReasonNotTLS, "%v", err), start))
		c.Close()
		return
	}
	ci.sni = domain.Normalize(hello.ServerName)
	if ci.sni == "" {
		p.decide(connDecision(ci, src, deny(ReasonNoSNI, "TLS without a server name to %s", ci.dst), start))
		c.Close()
		return
	}
	// A refused destination is still terminated, so the sandbox gets a
	// 403 that says why instead of an opaque reset.
	ci.denial = p.checkDestination(ci)
	if ci.denial == nil && !ci.sb.Inspect(ci.sni) {
		p.splice(ci, rc, start)
		return
	}
	p.terminate(ci, c, rc)
}

// terminate completes the TLS handshake with a leaf for the SNI name and
// serves the connection: HTTP/2 here, HTTP/1.1 through the h1 server.
func (p *Proxy) terminate(ci *connInfo, raw, rc net.Conn) {
	tc := tls.Server(rc, p.tlsConfig)
	if err := tc.Handshake(); err != nil {
		p.log.Debug("client handshake failed", logSandbox, ci.sb.ID(), logHost, ci.sni, logError, err)
		raw.Close()
		return
	}
	// The h1 server sets its own read deadlines per request; HTTP/2 is
	// bounded by its idle timeout.
	raw.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		ctx := context.WithValue(context.Background(), connInfoKey{}, ci)
		p.h2.ServeConn(tc, &http2.ServeConnOpts{Context: ctx, BaseConfig: p.h1, Handler: p})
		return
	}
	served := make(chan struct{})
	if !p.conns.put(&proxyConn{Conn: tc, info: ci, closed: served}) {
		raw.Close()
		return
	}
	// Stay until h1 is done with the connection, so the per-sandbox count
	// and Shutdown see it.
	<-served
} // identify finds the sandbox behind src and where it was connecting to.
func (p *Proxy) identify(src netip.AddrPort) (*connInfo, *denial) {
	sb, ok := p.cfg.Sandboxes(src.Addr())
	if !ok {
		return nil, deny(ReasonUnknownSandbox, "no sandbox has address %s", src.Addr())
	}
	od, err := p.cfg.OrigDst(src)
	if err != nil {
		return nil, deny(ReasonUnknownConn, "%v", err)
	}
	// The capture program records the cgroup that called connect(); a
	// connection claiming a sandbox's address from anywhere else is forged.
	if sb.SteeredAtVeth() || od.CgroupID != sb.CgroupID() {
		return nil, deny(ReasonSpoofedSource, "connection from %s was not made by sandbox %s", src, sb.ID())
	}
	return &connInfo{sb: sb, src: src, dst: od.Dst}, nil
}

// identifySteered finds the sandbox behind a connection the veth
// steering program assigned: the original destination is the accepted
// socket's local address. The source address is trusted because the veth
// guard drops every packet from a sandbox's veth whose source is not that
// sandbox's own; a cgroup-mode sandbox's connection can only arrive here if
// something bypassed its socket programs, so it is refused.
func (p *Proxy) identifySteered(src, local netip.AddrPort) (*connInfo, *denial) {
	sb, ok := p.cfg.Sandboxes(src.Addr())
	if !ok {
		return nil, deny(ReasonUnknownSandbox, "no sandbox has address %s", src.Addr())
	}
	if !sb.SteeredAtVeth() {
		return nil, deny(ReasonSpoofedSource, "connection from %s reached the veth listener, but sandbox %s is captured by cgroup", src, sb.ID())
	}
	return &connInfo{sb: sb, src: src, dst: local}, nil
}

// checkDestination applies policy and the DNS pin to a connection.
func (p *Proxy) checkDestination(ci *connInfo) *denial {
	if !ci.sb.Allows(ci.sni) {
		return deny(ReasonHostNotAllowed, "%s is not allowed for this sandbox", ci.sni)
	}
	if !p.cfg.Pins.Check(ci.sb.ID(), ci.dst.Addr(), ci.sni) {
		return deny(ReasonNotPinned, "%s was not resolved to %s by keygate for this sandbox", ci.sni, ci.dst.Addr())
	}
	return nil
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// connQueue is a net.Listener fed with terminated connections, so one
// http.Server serves all of them.
type connQueue struct {
	ch        chan net.Conn
	closeOnce sync.Once
	done      chan struct{}
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }

var _ net.Listener = (*connQueue)(nil)
