package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// clientHello returns the bytes of a real ClientHello for serverName.
func clientHello(t testing.TB, serverName string, alpn ...string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		tls.Client(c, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
		c.Close()
	}()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	// A TLS record: 5-byte header with the length at [3:5].
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(s, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, body); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return append(hdr, body...)
}

// bytesConn is a net.Conn that reads from a fixed buffer and discards
// writes.
type bytesConn struct {
	net.Conn // nil: only the methods below are used
	r        io.Reader
}

func (c *bytesConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bytesConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bytesConn) Close() error                     { return nil }
func (c *bytesConn) SetDeadline(time.Time) error      { return nil }
func (c *bytesConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bytesConn) SetWriteDeadline(time.Time) error { return nil }
func (c *bytesConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bytesConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

func TestPeekClientHello(t *testing.T) {
	hello := clientHello(t, "api.example.test", "h2", "http/1.1")
	info, rc, err := peekClientHello(&bytesConn{r: bytes.NewReader(hello)})
	if err != nil {
		t.Fatal(err)
	}
	if info.ServerName != "api.example.test" || len(info.SupportedProtos) != 2 {
		t.Fatalf("peeked %q %v", info.ServerName, info.SupportedProtos)
	}
	replayed, _ := io.ReadAll(rc)
	if !bytes.Equal(replayed, hello) {
		t.Fatal("the replayed connection does not start with the peeked bytes")
	}
	for _, bad := range [][]byte{nil, []byte("GET / HTTP/1.1\r\n\r\n"), hello[:20], {0x16, 3, 1, 0xff, 0xff}} {
		if _, _, err := peekClientHello(&bytesConn{r: bytes.NewReader(bad)}); err == nil {
			t.Errorf("peek of %q succeeded", bad)
		}
	}
}

func TestLooksLikeHTTP(t *testing.T) {
	tests := map[string]bool{
		"GET / HTTP/1.1\r\n":    true,
		"POST /x HTTP/1.1\r\n":  true,
		"CONNECT a:443 HTTP/1":  true,
		"\x16\x03\x01\x02\x00":  false,
		"SSH-2.0-OpenSSH_9.2\r": false,
		"GETX":                  false,
		"":                      false,
	}
	for in, want := range tests {
		if got := looksLikeHTTP(bufio.NewReader(bytes.NewReader([]byte(in)))); got != want {
			t.Errorf("looksLikeHTTP(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzPeekClientHello feeds arbitrary bytes to the ClientHello peek and
// the plaintext check: neither may panic, and a successful peek must
// replay exactly the bytes it was given.
func FuzzPeekClientHello(f *testing.F) {
	f.Add(clientHello(f, "api.example.test"))
	f.Add(clientHello(f, "xn--bcher-kva.example", "h2"))
	f.Add(clientHello(f, ""))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		looksLikeHTTP(bufio.NewReader(bytes.NewReader(in)))
		info, rc, err := peekClientHello(&bytesConn{r: bytes.NewReader(in)})
		if err != nil {
			return
		}
		if info == nil {
			t.Fatal("no error and no hello")
		}
		replayed, _ := io.ReadAll(rc)
		if !bytes.Equal(replayed, in) {
			t.Fatalf("replayed %d bytes, given %d", len(replayed), len(in))
		}
	})
}
