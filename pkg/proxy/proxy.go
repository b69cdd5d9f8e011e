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

	"github.com/keygate/keygate/pkg/pin"
	"github.com/keygate/keygate/pkg/vault"
)

// Sandbox is the proxy's view of the sandbox behind a connection.
type Sandbox interface {
	ID() string
	CgroupID() uint64        // cgroup the sandbox's processes run in
	Allows(host string) bool // whether policy lets the sandbox reach host at all
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
}

// Credentials resolves placeholders. Every method is called per request,
// so rotation, removal and archive take effect on the next request.
type Credentials interface {
	// Lookup returns the credential behind placeholder id as used by sb;
	// ErrForeignPlaceholder or ErrUnknownPlaceholder when it is not sb's.
	Lookup(sb Sandbox, id string) (Binding, error)
	// Secret returns b's current secret.
	Secret(b Binding) (vault.Secret, error)
	// Templates returns sb's credentials that have a header template and
	// are approved for host; an error (wrapping vault.ErrArchived or
	// vault.ErrNotFound) if such a credential can no longer be used.
	Templates(sb Sandbox, host string) ([]Binding, error)
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

	HandshakeTimeout time.Duration // ClientHello and handshake; 0 = 10s
	IdleTimeout      time.Duration // keep-alive idle; 0 = 90s
}

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
	return nil
}

// Proxy is the transparent TLS proxy.
type Proxy struct {
	cfg       Config
	log       *slog.Logger
	tlsConfig *tls.Config
	rp        *httputil.ReverseProxy
	h1        *http.Server
	conns     *connQueue // terminated connections waiting for h1
	upstreams *upstreams

	wg sync.WaitGroup // per-connection goroutines
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
	}
	p.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cfg.Certs.Get(h.ServerName)
		},
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    p.upstreams,
		ErrorHandler: p.upstreamError,
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	p.h1 = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: cfg.HandshakeTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       connContext,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Serve accepts captured connections on ln until Shutdown.
func (p *Proxy) Serve(ln net.Listener) error {
	go p.h1.Serve(p.conns)
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
			p.handleConn(c)
		}()
	}
}

// Shutdown stops serving HTTP, waits for in-flight handshakes and closes
// idle upstream connections. The listener passed to Serve is the caller's
// to close.
func (p *Proxy) Shutdown(ctx context.Context) error {
	err := p.h1.Shutdown(ctx)
	p.wg.Wait()
	p.upstreams.closeIdle()
	return err
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	p.log.Warn("upstream request failed", "host", r.Host, "err", err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "{\"error\":%q}\n", "keygate: upstream: "+err.Error())
}

// rewrite points the outgoing request at the pinned address; the Host
// header stays the name the sandbox used (already checked against SNI).
func rewrite(pr *httputil.ProxyRequest) {
	ci := infoFrom(pr.In.Context())
	pr.Out.URL.Scheme = "https"
	pr.Out.URL.Host = ci.dst.String()
	pr.Out.Host = pr.In.Host
}
