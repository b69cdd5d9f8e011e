package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

func init() { helpers["relay"] = runRelay }

// runRelay is the minimal relay row: the least work a TLS-terminating
// HTTP/1.1 proxy written in Go can do per request, as a reference for
// what the machine allows. Each client connection gets its own upstream
// connection (HTTP/1.1, verified TLS); a request head is copied line by
// line with the placeholder replaced in Authorization, and the answer is
// copied back by its Content-Length, one write each way. It makes none
// of keygate's checks, keeps no log, and serves nothing else: a request
// with a body, or an answer without a Content-Length, ends the
// connection. It serves until SIGTERM.
func runRelay(args []string) error {
	pa, err := parsePeerArgs("relay", args)
	if err != nil {
		return err
	}
	// No ALPN: a Go server that offers some refuses clients that offer
	// only others (h2), where this one should let them fall back.
	ln, err := tls.Listen("tcp", pa.listen, &tls.Config{Certificates: []tls.Certificate{pa.cert}})
	if err != nil {
		return err
	}
	onTerm(func() { ln.Close() })
	r := &relay{
		dialer: &tls.Dialer{
			NetDialer: &net.Dialer{Timeout: 10 * time.Second},
			Config:    &tls.Config{ServerName: pa.host, RootCAs: pa.roots, NextProtos: []string{"http/1.1"}},
		},
		upstream: pa.upstream, placeholder: []byte(pa.placeholder), secret: []byte(pa.secret),
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go r.serve(c)
	}
}

type relay struct {
	dialer              *tls.Dialer
	upstream            string
	placeholder, secret []byte
}

// serve relays requests from c one at a time until either side ends.
func (r *relay) serve(c net.Conn) {
	defer c.Close()
	u, err := r.dialer.Dial("tcp", r.upstream)
	if err != nil {
		return
	}
	defer u.Close()
	cr, cw := bufio.NewReaderSize(c, 16<<10), bufio.NewWriterSize(c, 16<<10)
	ur, uw := bufio.NewReaderSize(u, 16<<10), bufio.NewWriterSize(u, 16<<10)
	for {
		if err := r.copyRequestHead(uw, cr); err != nil || uw.Flush() != nil {
			return
		}
		n, err := copyResponseHead(cw, ur)
		if err != nil {
			return
		}
		if _, err := io.CopyN(cw, ur, n); err != nil || cw.Flush() != nil {
			return
		}
	}
}

var (
	authorization = []byte("authorization")
	contentLength = []byte("content-length")
)

// copyRequestHead copies one request head from src to dst with the
// placeholder replaced in Authorization. A request with a body is refused.
func (r *relay) copyRequestHead(dst *bufio.Writer, src *bufio.Reader) error {
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return err
		}
		name := headerName(line)
		switch {
		case bytes.EqualFold(name, authorization):
			line = bytes.ReplaceAll(line, r.placeholder, r.secret)
		case bytes.EqualFold(name, contentLength) || bytes.EqualFold(name, []byte("transfer-encoding")):
			return errors.New("the relay carries no request bodies")
		}
		dst.Write(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

// copyResponseHead copies one response head from src to dst and returns
// the length of the body that follows.
func copyResponseHead(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	n := int64(-1)
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		dst.Write(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			if n < 0 {
				return 0, errors.New("an answer without a Content-Length")
			}
			return n, nil
		}
		if name := headerName(line); bytes.EqualFold(name, contentLength) {
			v := bytes.TrimSpace(line[len(name)+1:])
			if n, err = strconv.ParseInt(string(v), 10, 64); err != nil || n < 0 {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
}

// headerName is the field name of a header line, or nil for a line
// without a colon (the request or status line).
func headerName(line []byte) []byte {
	if i := bytes.IndexByte(line, ':'); i > 0 {
		return line[:i]
	}
	return nil
}
