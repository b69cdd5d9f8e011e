package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
)

// errPeeked stops the throwaway handshake once the ClientHello is read.
var errPeeked = errors.New("client hello peeked")

// peekClientHello reads the TLS ClientHello from c without answering it,
// and returns it with a connection that replays the bytes read so far.
// crypto/tls does the parsing, so a malformed hello fails here the way it
// would fail a real handshake.
func peekClientHello(c net.Conn) (*tls.ClientHelloInfo, net.Conn, error) {
	var buf bytes.Buffer
	rec := &recordingConn{Conn: c, r: io.TeeReader(c, &buf)}

	var hello *tls.ClientHelloInfo
	cfg := &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hi := *h
			hi.Conn = nil
			hello = &hi
			return nil, errPeeked
		},
	}
	err := tls.Server(rec, cfg).Handshake()
	if hello == nil {
		if err == nil {
			err = errors.New("no client hello")
		}
		return nil, nil, err
	}
	return hello, &replayConn{Conn: c, r: io.MultiReader(&buf, c)}, nil
}

// recordingConn reads through r and discards writes, so the throwaway
// handshake's alert never reaches the client.
type recordingConn struct {
	net.Conn
	r io.Reader
}

func (c *recordingConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *recordingConn) Write(p []byte) (int, error) { return len(p), nil }

// replayConn returns the peeked bytes before reading on.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
