package proxy

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"time"
)

// httpMethods start a plaintext HTTP/1.x request line. A TLS record starts
// with byte 0x16, so the two never collide.
var httpMethods = [][]byte{
	[]byte("GET "), []byte("POST "), []byte("PUT "), []byte("HEAD "), []byte("DELETE "),
	[]byte("PATCH "), []byte("OPTIONS "), []byte("CONNECT "), []byte("TRACE "),
}

// looksLikeHTTP reports whether the connection starts with a plaintext
// HTTP request line. It waits for at most the first few bytes.
func looksLikeHTTP(br *bufio.Reader) bool {
	first, err := br.Peek(1)
	if err != nil || first[0] == 0x16 {
		return false
	}
	for _, m := range httpMethods {
		if b, err := br.Peek(len(m)); err == nil && bytes.Equal(b, m) {
			return true
		}
	}
	return false
}

// refusePlaintext answers a plaintext HTTP request with a 403 that says
// why, and closes the connection. Nothing is forwarded: without TLS the
// destination is whatever the Host header claims, and a placeholder sent
// in the clear must not be substituted either.
func (p *Proxy) refusePlaintext(ci *connInfo, c net.Conn, br *bufio.Reader, start time.Time) {
	defer c.Close()
	req, err := http.ReadRequest(br)
	if err != nil {
		p.decide(connDecision(ci, ci.src, deny(ReasonNotTLS, "malformed plaintext request: %v", err), start))
		return
	}
	ci.sni = req.Host
	d := deny(ReasonPlaintextHTTP,
		"plaintext HTTP to %s is refused: keygate forwards only TLS, use https://", ci.dst)
	resp := &http.Response{
		StatusCode: http.StatusForbidden, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Close: true, Request: req,
	}
	var body bytes.Buffer
	sw := &bufferWriter{header: resp.Header, body: &body}
	writeDenial(sw, d)
	resp.Body = nopCloser{&body}
	resp.ContentLength = int64(body.Len())
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	resp.Write(c)

	dec := connDecision(ci, ci.src, d, start)
	dec.Method, dec.Path, dec.Status = req.Method, req.URL.Path, http.StatusForbidden
	p.decide(dec)
}

// bufferWriter is the http.ResponseWriter writeDenial needs, into memory.
type bufferWriter struct {
	header http.Header
	body   *bytes.Buffer
}

func (w *bufferWriter) Header() http.Header         { return w.header }
func (w *bufferWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *bufferWriter) WriteHeader(int)             {}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }
