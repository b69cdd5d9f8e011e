package testworld

import (
	"bytes"
	"errors"
	"net"
	"sync"
)

// serveUDPSink records every datagram conn receives until conn is closed.
func (w *World) serveUDPSink(conn *net.UDPConn) {
	dst := addrPortOf(conn.LocalAddr())
	w.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					w.noteServeError(err)
				}
				return
			}
			w.rec.addDatagram(Datagram{
				Network: "udp",
				Dst:     dst,
				Src:     unmapPort(src),
				Payload: bytes.Clone(buf[:n]),
			})
		}
	})
	w.stop = append(w.stop, conn.Close)
}

// tcpSink accepts connections and records what each sends, answering
// nothing. A client waiting for a reply waits until it gives up or the world
// closes.
type tcpSink struct {
	ln  net.Listener
	rec *recorder
	wg  sync.WaitGroup

	mu sync.Mutex
	// mu guards conns.
	conns map[net.Conn]struct{}
}

// serveTCPSink records every connection to ln until the world closes.
func (w *World) serveTCPSink(ln net.Listener) {
	s := &tcpSink{ln: ln, rec: w.rec, conns: make(map[net.Conn]struct{})}
	w.wg.Go(s.acceptLoop)
	w.stop = append(w.stop, s.close)
}

func (s *tcpSink) acceptLoop() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.record(conn) })
	}
}

// record appends what conn sends to one Datagram, read by read, so that a
// test polling Received sees bytes as they arrive rather than at hang-up.
func (s *tcpSink) record(conn net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
	}()

	i := s.rec.addStream(Datagram{
		Network: "tcp",
		Dst:     addrPortOf(conn.LocalAddr()),
		Src:     addrPortOf(conn.RemoteAddr()),
	})
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		s.rec.appendStream(i, buf[:n])
		if err != nil {
			return
		}
	}
}

// close stops accepting, drops open connections and waits for their
// goroutines.
func (s *tcpSink) close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}
