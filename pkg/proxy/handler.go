package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/pkg/domain"
)

// ServeHTTP handles one request on a terminated connection: identity
// checks, placeholder substitution, forwarding, and one decision record.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ci := infoFrom(r.Context())
	sw := &statusWriter{ResponseWriter: w}

	in := &injection{sb: ci.sb, host: ci.sni, creds: p.cfg.Credentials}
	d := ci.denial
	if d == nil {
		if !p.startRequest(ci.sb.ID()) {
			d = deny(ReasonTooManyRequests, "sandbox %s is at its cap of %d requests in flight; retry when some end",
				ci.sb.ID(), p.cfg.MaxRequestsPerSandbox)
			d.status = http.StatusTooManyRequests
		} else {
			defer p.endRequest(ci.sb.ID())
		}
	}
	if d == nil {
		d = checkHost(ci, r.Host)
	}
	if d == nil && r.Method == http.MethodConnect {
		// A tunnel would carry bytes no check sees, and an upstream
		// that is itself a forward proxy would open it anywhere.
		d = deny(ReasonConnectMethod, "CONNECT is not relayed: keygate is not a forward proxy; "+
			"connect to the destination itself (no proxy settings are needed)")
	}
	if d == nil {
		d = in.apply(r)
	}
	if d == nil {
		in.prepareRedaction()
	}
	switch {
	case d != nil:
		writeDenial(sw, d)
	case len(in.shown) > 0:
		// The response is searched for the secrets sent, so it must
		// arrive uncompressed: the transport then asks for gzip itself
		// and decodes it before the redactor reads. For the same reason
		// a WebSocket handshake goes out without its extension offers
		// (permessage-deflate).
		r.Header.Del("Accept-Encoding")
		r.Header.Del("Sec-WebSocket-Extensions")
		sw.in = in
		p.rp.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), injectionKey{}, in)))
	default:
		p.rp.ServeHTTP(sw, r)
	}
	p.decide(requestDecision(ci, r, sw, in.used, d, start))
}

// checkHost requires the request's Host (or :authority) to name the TLS
// server name, and any port in it to be the port dialled.
func checkHost(ci *connInfo, hostport string) *denial {
	host, port := hostport, ""
	if h, pt, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, pt
	}
	if domain.Normalize(host) != ci.sni {
		return deny(ReasonHostMismatch, "Host %q does not match the TLS server name %q", host, ci.sni)
	}
	if port != "" && port != strconv.Itoa(int(ci.dst.Port())) {
		return deny(ReasonHostMismatch, "Host port %s does not match the port dialled (%d)", port, ci.dst.Port())
	}
	return nil
}

// statusWriter records the status and body size of a response. Unwrap
// lets http.ResponseController reach Flush and Hijack underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	in     *injection // the request's substitutions, when it carried secrets
}

func (w *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (103 Early Hints) is relayed by the
		// reverse proxy as it arrives, past ModifyResponse: its headers
		// are redacted here. It is not the response's status.
		if w.in != nil && w.in.red != nil {
			w.in.red.headers(w.Header())
		}
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// redactResponse is the reverse proxy's ModifyResponse: when the request
// carried secrets, every form of them in the response's headers and body
// is replaced by the sandbox's placeholder. A body of known length up to
// maxBufferedRedaction is redacted whole and keeps a correct length; a
// longer or unbounded one is streamed without a Content-Length, since
// replacing changes it. An upgraded connection is relayed as WebSocket
// frames with their payloads redacted (redactUpgrade).
func redactResponse(resp *http.Response) error {
	in := injectionOf(resp.Request.Context())
	if in == nil || in.red == nil {
		return nil
	}
	red := in.red
	red.headers(resp.Header)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return redactUpgrade(resp, red)
	}
	// A response to HEAD, a 204 and a 304 have no body, whatever their
	// Content-Length says (for HEAD, the length of the body a GET would
	// get): there is nothing to redact, and the length must stay.
	if resp.Body == nil || resp.Body == http.NoBody || resp.Request.Method == http.MethodHead ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified {
		return nil
	}
	// The transport asks for gzip and decodes it (the sandbox's own
	// Accept-Encoding was dropped); a body still encoded is one the
	// upstream compressed unasked (br, zstd, deflate), in which the
	// secret could not be found. It is refused, not passed on.
	if enc := resp.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		return fmt.Errorf("%w: the upstream sent a %q-encoded body it was not asked for", errUnsearchable, enc)
	}
	// A response that announces trailers is streamed: over HTTP/1.1 they
	// need chunked encoding, which a Content-Length would rule out.
	if resp.ContentLength >= 0 && resp.ContentLength <= maxBufferedRedaction && len(resp.Trailer) == 0 {
		return redactWhole(resp, red)
	}
	// Trailer values arrive with the end of the body.
	resp.Body = red.body(resp.Body, func() { red.headers(resp.Trailer) })
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return nil
}

// errUnsearchable is why a response to a request that carried a secret
// is refused: it could not be searched for the secret.
var errUnsearchable = errors.New("response cannot be searched for the secret sent")

// maxBufferedRedaction is the largest body with a known length that is
// redacted whole rather than streamed. Most API answers are small; read
// whole they keep a correct Content-Length and go out in one write,
// instead of as a stream flushed after every read.
const maxBufferedRedaction = 1 << 20

// redactWhole reads a body of known length, redacts it and gives the
// response its new length.
func redactWhole(resp *http.Response, red *redactor) error {
	buf := wholeBodies.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, resp.ContentLength+1))
	resp.Body.Close()
	if err != nil {
		wholeBodies.Put(buf)
		return fmt.Errorf("read upstream body: %w", err)
	}
	out := red.replaceAll(buf.Bytes())
	red.headers(resp.Trailer)
	resp.Body = &wholeBody{Reader: bytes.NewReader(out), buf: buf}
	resp.ContentLength = int64(len(out))
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}

// wholeBodies holds the buffers small bodies are redacted in; one is
// reused once its response has been copied to the sandbox.
var wholeBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBody is the largest buffer put back in wholeBodies: an
// occasional large body should not stay in memory for good.
const maxPooledBody = 64 << 10

// wholeBody is a redacted body held in memory; Close gives its buffer
// back.
type wholeBody struct {
	*bytes.Reader
	buf *bytes.Buffer
}

func (b *wholeBody) Close() error {
	if b.buf != nil && b.buf.Cap() <= maxPooledBody {
		b.Reader.Reset(nil)
		wholeBodies.Put(b.buf)
	}
	b.buf = nil
	return nil
}
