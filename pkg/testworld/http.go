package testworld

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// maxBody caps how much of a request body or TCP stream is recorded.
const maxBody = 1 << 20

// recordingHandler records every request and answers 200 with a small JSON
// body, whatever was asked. Tests judge behaviour from the recordings, so the
// servers do not enforce anything themselves.
type recordingHandler struct {
	server string         // world host name requests are filed under, e.g. "api.example.test"
	dst    netip.AddrPort // the listener's address, recorded as Request.Dst
	rec    *recorder

	// sniServer, if not empty, is a second name this listener serves: a
	// request that came over TLS with it as the server name is filed under
	// sniServer instead of server.
	sniServer string
}

var _ http.Handler = (*recordingHandler)(nil)

func (h *recordingHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if isWebSocket(r) {
		// The handshake is recorded; the connection then echoes frames.
		h.record(r, nil)
		if r.URL.Path == specialPrefix+"ws-reflect" {
			serveWebSocketReflect(rw, r)
			return
		}
		serveWebSocket(rw, r)
		return
	}
	if r.URL.Path == specialPrefix+"stall" {
		// An upstream that stops reading: the body is left unread until
		// the answer, or until the request ends.
		h.record(r, nil)
		select {
		case <-time.After(time.Duration(atoi(r.URL.Query().Get("ms"), 10_000)) * time.Millisecond):
		case <-r.Context().Done():
		}
		io.WriteString(rw, "stalled\n")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	// Drain the rest so trailers, which follow the body, are filled in.
	rest, _ := io.Copy(io.Discard, r.Body)
	server := h.record(r, body)
	if r.URL.Path == specialPrefix+"replay" {
		// The Authorization header of the request before this one, as a
		// debug endpoint that lists recent requests would show it.
		reqs := h.rec.requestsFor(server)
		if len(reqs) >= 2 {
			io.WriteString(rw, "previous Authorization: "+reqs[len(reqs)-2].Header.Get("Authorization")+"\n")
		}
		return
	}
	if serveSpecial(rw, r, int64(len(body))+rest) {
		return
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(map[string]string{
		"server": server,
		"method": r.Method,
		"path":   r.URL.RequestURI(),
	})
}

// record files the request and returns the server name it was filed under.
func (h *recordingHandler) record(r *http.Request, body []byte) string {

	req := Request{
		Host:    r.Host,
		Method:  r.Method,
		Path:    r.URL.RequestURI(),
		Header:  r.Header.Clone(),
		Trailer: r.Trailer.Clone(),
		Body:    body,
		Proto:   r.Proto,
		Dst:     h.dst,
		Time:    time.Now(),
	}
	if src, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.Src = unmapPort(src)
	}
	server := h.server
	if r.TLS != nil {
		req.TLS = true
		req.SNI = r.TLS.ServerName
		if h.sniServer != "" && strings.EqualFold(req.SNI, h.sniServer) {
			server = h.sniServer
		}
	}
	h.rec.addRequest(server, req)
	return server
}

// newHTTPServer returns a server for h. With a certificate it serves HTTPS,
// offering HTTP/2 and HTTP/1.1 through ALPN.
func newHTTPServer(h *recordingHandler, cert *tls.Certificate) *http.Server {
	srv := &http.Server{
		Handler: h,
		// Failed handshakes are expected (tests present the wrong CA on
		// purpose); the library must not write to the process's log.
		ErrorLog:          log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 30 * time.Second,
	}
	if cert != nil {
		srv.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{*cert},
			MinVersion:   tls.VersionTLS12,
		}
	}
	return srv
}

// serveHTTP serves srv on ln until Close, over TLS if srv has a TLSConfig.
func (w *World) serveHTTP(srv *http.Server, ln net.Listener) {
	w.wg.Go(func() {
		var err error
		if srv.TLSConfig != nil {
			// ServeTLS, unlike Serve on a tls.Listener, also sets up HTTP/2.
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.noteServeError(err)
		}
	})
	w.stop = append(w.stop, srv.Close)
}

// unmapPort turns an IPv4-mapped IPv6 address back into plain IPv4.
func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
