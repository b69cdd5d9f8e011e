package proxy

import (
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds the connection to an upstream.
const dialTimeout = 10 * time.Second

// splice relays a connection that needs no credential to its pinned
// destination without terminating TLS: the sandbox's TLS session is with
// the real server, so certificate pinning keeps working. The ClientHello
// already read is replayed first. The decision is recorded when both
// directions are done.
func (p *Proxy) splice(ci *connInfo, rc net.Conn, start time.Time) {
	defer rc.Close()
	rc.SetDeadline(time.Time{})
	up, err := net.DialTimeout("tcp", ci.dst.String(), dialTimeout)
	if err != nil {
		d := deny(ReasonUpstreamFailed, "dial %s: %v", ci.dst, err)
		p.decide(connDecision(ci, ci.src, d, start))
		return
	}
	defer up.Close()

	var wg sync.WaitGroup
	var sent, received int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		sent, _ = io.Copy(up, rc)
		closeWrite(up)
	}()
	received, _ = io.Copy(rc, up)
	closeWrite(rc)
	wg.Wait()

	p.decide(Decision{
		Sandbox: ci.sb.ID(), Src: ci.src, Dst: ci.dst, Host: ci.sni,
		Outcome: OutcomeSpliced, Bytes: received, Duration: time.Since(start),
		Detail: "relayed without TLS termination", Sent: sent,
	})
}

// closeWrite half-closes c if it can, so the peer sees EOF while the other
// direction drains; otherwise it closes c.
func closeWrite(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	switch cw := c.(type) {
	case closeWriter:
		cw.CloseWrite()
	case *replayConn:
		closeWrite(cw.Conn)
	case *bufferedConn:
		closeWrite(cw.Conn)
	default:
		c.Close()
	}
}
