// Package proxy is keygate's transparent TLS proxy: it accepts connections
// the capture programs redirected, checks that the TLS server name was
// resolved for this sandbox to the address it dialled, terminates TLS with
// a leaf from the host CA, substitutes placeholders with secrets on
// approved hosts only, and forwards to the pinned address over verified TLS.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/keygate/keygate/pkg/lograte"
	"github.com/keygate/keygate/pkg/pin"
)

// Sandbox is the proxy's view of the sandbox behind a connection.
type Sandbox interface {
	ID() string
	CgroupID() uint64        // cgroup the sandbox's processes run in
	Allows(host string) bool // whether policy lets the sandbox reach host at all
	// Inspect reports whether TLS to host must be terminated even though
	// no credential is approved for it: the sandbox holds placeholders
	// (one sent to the wrong host must be refused, and audited), or the
	// operator asked for every connection to be inspected. When false,
	// the connection is spliced to the pinned address after the SNI and
	// pin checks, so certificate-pinning clients keep working.
	Inspect(host string) bool
	// SteeredAtVeth reports whether the sandbox is captured at its veth
	// (tc mode) rather than by the cgroup socket programs.
	SteeredAtVeth() bool
}

// Binding is the credential a placeholder stands for, as much of it as
// injection needs.
type Binding struct {
	Vault      string
	Credential string
	Domains    []string // approved domain patterns
	Prefix     string   // placeholder prefix, replaced along with the token; "" = none
	Query      bool     // substitution in the query string allowed
	Header     string   // "Name: text {}" template set on approved hosts; "" = none
	// Placeholder is the sandbox's full placeholder for the credential
	// (prefix included); responses carrying the secret show this instead.
	Placeholder string
}

// Credentials resolves placeholders. Every method is called per request,
// so rotation, removal and archive take effect on the next request.
type Credentials interface {
	// Lookup returns the credential behind placeholder id as used by sb;
	// ErrForeignPlaceholder or ErrUnknownPlaceholder when it is not sb's.
	Lookup(sb Sandbox, id string) (Binding, error)
	// Secret returns b's current secret, made with NewSecret once per
	// secret version rather than per call.
	Secret(b Binding) (*Secret, error)
	// Templates returns sb's credentials that have a header template and
	// are approved for host; an error (wrapping vault.ErrArchived or
	// vault.ErrNotFound) if such a credential can no longer be used.
	Templates(sb Sandbox, host string) ([]Binding, error)
	// Approved returns every live credential of sb approved for host,
	// whether or not a request uses it: the upstream may know their
	// secrets, so its answers are searched for all of them.
	Approved(sb Sandbox, host string) []Binding
	// Retired returns the secrets b had before its latest rotations, for
	// a bounded time: answers are searched for them too, since the
	// upstream may have seen them before, but they are never sent.
	Retired(b Binding) []*Secret
}

// OrigDst is where a captured connection was going.
type OrigDst struct {
	Dst      netip.AddrPort
	CgroupID uint64
}

// Certificates issues leaf certificates signed by the host CA.
type Certificates interface {
	Get(host string) (*tls.Certificate, error)
}

// Config wires the proxy to the rest of the agent. Every field is required
// except Logger and the timeouts.
type Config struct {
	Sandboxes     func(src netip.Addr) (Sandbox, bool)
	OrigDst       func(src netip.AddrPort) (OrigDst, error)
	Pins          *pin.Table
	Certs         Certificates
	Credentials   Credentials
	UpstreamRoots *x509.CertPool // nil = system roots
	Logger        *slog.Logger   // nil = discard
	// OnDecision, if set, receives every Decision after it is logged, on
	// the request's goroutine; the agent audits them. It must not block
	// for long.
	OnDecision func(Decision)

	HandshakeTimeout time.Duration // ClientHello, handshake and request headers; 0 = 10s
	IdleTimeout      time.Duration // keep-alive idle; 0 = 90s
	// MaxConnsPerSandbox caps a sandbox's concurrent connections; more are
	// refused. 0 = DefaultMaxConnsPerSandbox.
	MaxConnsPerSandbox int
	// MaxRequestsPerSandbox caps a sandbox's requests in flight, over all
	// its connections (WebSocket and streaming answers count until they
	// end); more get 429. 0 = DefaultMaxRequestsPerSandbox.
	MaxRequestsPerSandbox int
}

// DefaultMaxConnsPerSandbox is the connection cap when the Config sets none.
const DefaultMaxConnsPerSandbox = 1024

// DefaultMaxRequestsPerSandbox is the cap on a sandbox's requests in
// flight when the Config sets none. With HTTP/2 a connection carries up to
// 250 streams, so the connection cap alone would let one sandbox hold a
// quarter of a million, each with buffers and an upstream stream.
const DefaultMaxRequestsPerSandbox = 1024

func (c *Config) validate() error {
	if c.Sandboxes == nil || c.OrigDst == nil || c.Pins == nil || c.Certs == nil || c.Credentials == nil {
		return errors.New("proxy config: Sandboxes, OrigDst, Pins, Certs and Credentials are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.MaxConnsPerSandbox == 0 {
		c.MaxConnsPerSandbox = DefaultMaxConnsPerSandbox
	}
	if c.MaxRequestsPerSandbox == 0 {
		c.MaxRequestsPerSandbox = DefaultMaxRequestsPerSandbox
	}
	return nil
}

// Proxy is the transparent TLS proxy.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	tlsConfig *tls.Config
	rp        *httputil.ReverseProxy
	h1        *http.Server
	h2        *http2.Server
	conns     *connQueue // terminated HTTP/1.1 connections waiting for h1
	upstreams *upstreams

	wg       sync.WaitGroup   // per-connection goroutines
	startH1  sync.Once        // the h1 server starts with the first Serve
	errLimit *lograte.Limiter // upstream failures logged at most once a second

	mu       sync.Mutex
	bySB     map[string]map[net.Conn]struct{} // open connections by sandbox ID; guarded by mu
	shutdown bool                             // set by Shutdown; guarded by mu

	rmu      sync.Mutex
	inFlight map[string]int // requests in flight per sandbox ID; guarded by rmu
}

// New returns a proxy; Serve starts it.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:       cfg,
		log:       cfg.Logger,
		conns:     newConnQueue(),
		upstreams: newUpstreams(cfg.UpstreamRoots),
		bySB:      make(map[string]map[net.Conn]struct{}),
		errLimit:  lograte.New(time.Second),
		inFlight:  make(map[string]int),
	}
	p.tlsConfig = sandboxTLS(cfg.Certs)
	p.rp = &httputil.ReverseProxy{
		Rewrite:        rewrite,
		Transport:      p.upstreams,
		ModifyResponse: redactResponse,
		BufferPool:     copyBuffers{},
		ErrorHandler:   p.upstreamError,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	p.h1 = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	// Upload windows towards the sandbox: data a stream sent that the
	// upstream has not taken yet waits here. The hop is on the host (tens
	// of microseconds), so 128 KiB a stream still carries gigabytes a
	// second, and a sandbox at its request cap holds 128 MiB at most.
	p.h2 = &http2.Server{IdleTimeout: cfg.IdleTimeout, MaxConcurrentStreams: 250,
		MaxUploadBufferPerStream: 128 << 10, MaxUploadBufferPerConnection: 1 << 20}
	// Registers the HTTP/2 server for h1's graceful shutdown (GOAWAY).
	if err := http2.ConfigureServer(p.h1, p.h2); err != nil {
		return nil, fmt.Errorf("configure HTTP/2: %w", err)
	}
	return p, nil
}

// sandboxTLS is the TLS configuration of connections from sandboxes: a
// leaf for the name asked for, h2 or HTTP/1.1.
func sandboxTLS(certs Certificates) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		// The sandbox's TLS ends here, on the host: its packets never
		// leave the machine, and they never carry a real secret (the
		// sandbox holds only placeholders; responses are redacted). A
		// post-quantum key exchange protects nothing on this hop, and
		// its ML-KEM half made a new connection cost keygated about a
		// tenth more CPU, so classical groups only. Connections to
		// upstreams, which carry the secrets, keep Go's default
		// (X25519MLKEM768 first).
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return certs.Get(h.ServerName)
		},
	}
}

// Serve accepts connections the cgroup programs redirected to ln until
// Shutdown; their original destinations come from Config.OrigDst.
func (p *Proxy) Serve(ln net.Listener) error {
	return p.serve(ln, false)
}

// ServeSteered accepts connections the veth steering program assigned to
// ln, a transparent listener, until Shutdown. The original destination is
// each accepted socket's local address; only sandboxes captured at their
// veth are served here, whose source the veth guard vouches for.
func (p *Proxy) ServeSteered(ln net.Listener) error {
	return p.serve(ln, true)
}

func (p *Proxy) serve(ln net.Listener, steered bool) error {
	p.startH1.Do(func() { go p.h1.Serve(p.conns) })
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handleConn(c, steered)
		}()
	}
}

// SandboxGone lets go of what the proxy keeps for sandbox id once it has
// ended: its connections, and its upstream connections, closed as soon
// as they are idle. A connection of an ended sandbox can be open still:
// one whose peer's FIN was queued behind data keygated had stopped taking
// (an upload to an upstream that stopped reading) never arrives once the
// sandbox's namespace is gone, and the request would wait on it until TCP
// keepalive gave up, minutes later, holding up a shutdown meanwhile.
func (p *Proxy) SandboxGone(id string) {
	p.mu.Lock()
	for c := range p.bySB[id] {
		c.Close()
	}
	p.mu.Unlock()
	p.upstreams.forget(id)
}

// Shutdown stops serving HTTP and waits, until ctx is done, for requests
// in flight; then it closes every connection still open, waits for their
// goroutines and closes idle upstream connections. The listener passed to
// Serve is the caller's to close.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.shutdown = true
	p.mu.Unlock()
	err := p.h1.Shutdown(ctx)
	p.mu.Lock()
	for _, conns := range p.bySB {
		for c := range conns {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.upstreams.closeIdle()
	return err
}

// admit registers a connection from sb, or refuses it when the sandbox is
// at its cap or the proxy is shutting down. release undoes it.
func (p *Proxy) admit(c net.Conn, sb string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shutdown || len(p.bySB[sb]) >= p.cfg.MaxConnsPerSandbox {
		return false
	}
	if p.bySB[sb] == nil {
		p.bySB[sb] = make(map[net.Conn]struct{})
	}
	p.bySB[sb][c] = struct{}{}
	return true
}

func (p *Proxy) release(c net.Conn, sb string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.bySB[sb], c)
	if len(p.bySB[sb]) == 0 {
		delete(p.bySB, sb)
	}
}

// startRequest counts a request of sandbox sb in flight, or reports false
// when sb is at its cap. endRequest undoes it.
func (p *Proxy) startRequest(sb string) bool {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.inFlight[sb] >= p.cfg.MaxRequestsPerSandbox {
		return false
	}
	p.inFlight[sb]++
	return true
}

func (p *Proxy) endRequest(sb string) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.inFlight[sb]--; p.inFlight[sb] <= 0 {
		delete(p.inFlight, sb)
	}
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	// No error of the transport's is known to quote a header value, but
	// the cause goes to the log and to the sandbox: it is redacted like a
	// response, in case one ever does.
	msg := err.Error()
	if in := injectionOf(r.Context()); in != nil && in.red != nil {
		msg = string(in.red.replaceAll([]byte(msg)))
	}
	if ok, suppressed := p.errLimit.Allow(); ok {
		p.log.Warn("upstream request failed", logHost, r.Host, logError, msg, "suppressed", suppressed)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "{\"error\":%q}\n", "keygate: upstream: "+msg)
}

// rewrite points the outgoing request at the pinned address; the Host
// header stays the name the sandbox used (already checked against SNI).
func rewrite(pr *httputil.ProxyRequest) {
	ci := infoFrom(pr.In.Context())
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = ci.dst.String()
	pr.Out.Host = pr.In.Host
}

// copyBuffers lends the reverse proxy its body copy buffers: without a
// pool it allocates 32 KiB per response, two thirds of the proxy's
// allocation under load.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

var _ httputil.BufferPool = copyBuffers{}
