package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"

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
	info *connInfo
}

// handleConn identifies a captured connection, peeks its ClientHello,
// decides whether its destination is acceptable, terminates TLS and hands
// it to the HTTP server. Connections that cannot be identified, or that
// carry no TLS server name, are closed: there is nothing to answer them in.
func (p *Proxy) handleConn(c net.Conn) {
	start := time.Now()
	src := addrPortOf(c.RemoteAddr())
	ci, d := p.identify(src)
	if d != nil {
		p.decide(connDecision(nil, src, d, start))
		c.Close()
		return
	}

	c.SetDeadline(start.Add(p.cfg.HandshakeTimeout))
	hello, rc, err := peekClientHello(c)
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

	tc := tls.Server(rc, p.tlsConfig)
	if err := tc.Handshake(); err != nil {
		p.log.Debug("client handshake failed", "sandbox", ci.sb.ID(), "sni", ci.sni, "err", err)
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if !p.conns.put(&proxyConn{Conn: tc, info: ci}) {
		c.Close()
	}
}

// identify finds the sandbox behind src and where it was connecting to.
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
	if od.CgroupID != sb.CgroupID() {
		return nil, deny(ReasonSpoofedSource, "connection from %s was not made by sandbox %s", src, sb.ID())
	}
	return &connInfo{sb: sb, src: src, dst: od.Dst}, nil
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
