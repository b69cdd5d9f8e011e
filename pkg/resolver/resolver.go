// Package resolver is the DNS server keygate puts in front of every sandbox.
//
// All DNS a sandbox sends, to whatever server it names, is redirected here.
// The resolver answers only names the sandbox's policy allows: other names get
// NXDOMAIN without any query leaving the host, so DNS cannot be used to
// exfiltrate data through an attacker's name server. Allowed A queries are
// resolved upstream; addresses in private, loopback and other internal ranges
// are dropped from the answers (DNS rebinding), and every address that is
// returned is first pinned to the asked name for the asking sandbox in a
// pin.Table. The TLS proxy lets a connection through only when such a pin
// maps its SNI name to the dialled address.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/pin"
)

// DefaultTimeout bounds the upstream resolution of one query when
// Config.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// ednsSize is the UDP payload size the resolver advertises, to clients and
// upstream, and the most any UDP reply carries: the DNS Flag Day 2020 value,
// small enough to avoid IP fragmentation on common paths.
const ednsSize = 1232

// Keys of the resolver's structured log records.
const (
	logSubsystem = "subsystem"
	logSandbox   = "sandbox"
	logSource    = "source"
	logName      = "name"
	logType      = "type"
	logReason    = "reason"
	logAnswers   = "answers"
	logDropped   = "dropped"
	logError     = "err"
)

var (
	// ErrClosed is returned by Serve when the Resolver has been shut down.
	ErrClosed = errors.New("resolver closed")

	// ErrConfig is wrapped by the errors New returns for an invalid Config.
	ErrConfig = errors.New("invalid resolver config")
)

// Sandboxes identifies the sandbox behind a query's source address.
type Sandboxes interface {
	// BySource returns the sandbox ID and its allowed domain patterns (see
	// package domain) for a source IP; ok is false for unknown sources.
	BySource(src netip.Addr) (id string, allowed []string, ok bool)
}

// Config configures a Resolver.
type Config struct {
	// Upstream is the "host:port" of the resolver allowed names are sent
	// to. Required.
	Upstream string

	// Sandboxes maps query sources to sandboxes and their policies. Required.
	Sandboxes Sandboxes

	// Pins receives a pin for every address returned to a sandbox. Required.
	Pins *pin.Table

	// AllowPrivate lists ranges whose addresses are returned even though
	// they are internal, for upstreams that serve test names on private
	// addresses. Nil means no exception.
	AllowPrivate []netip.Prefix

	// Timeout bounds the upstream resolution of one query, including a
	// retry over TCP after a truncated UDP reply. Zero means DefaultTimeout.
	Timeout time.Duration

	// Logger receives decision records and errors. Nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.Upstream == "" {
		return fmt.Errorf("%w: no upstream", ErrConfig)
	}
	if _, _, err := net.SplitHostPort(c.Upstream); err != nil {
		return fmt.Errorf("%w: upstream %q: %w", ErrConfig, c.Upstream, err)
	}
	if c.Sandboxes == nil {
		return fmt.Errorf("%w: no sandboxes", ErrConfig)
	}
	if c.Pins == nil {
		return fmt.Errorf("%w: no pin table", ErrConfig)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("%w: negative timeout %v", ErrConfig, c.Timeout)
	}
	return nil
}

// Resolver is a dns.Handler answering sandbox queries under their policies.
// Run it with Serve, or hand it to a dns.Server of your own.
type Resolver struct {
	upstream     string
	sandboxes    Sandboxes
	pins         *pin.Table
	allowPrivate []netip.Prefix
	timeout      time.Duration
	log          *slog.Logger
	udp, tcp     *dns.Client

	// ctx is the parent of every upstream exchange; cancel, called by
	// Shutdown, abandons those in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	servers []*server // started by Serve; guarded by mu
	closed  bool      // set by Shutdown; guarded by mu
}

var _ dns.Handler = (*Resolver)(nil)

// New returns a Resolver configured by cfg.
func New(cfg Config) (*Resolver, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{
		upstream:     cfg.Upstream,
		sandboxes:    cfg.Sandboxes,
		pins:         cfg.Pins,
		allowPrivate: cfg.AllowPrivate,
		timeout:      timeout,
		log:          logger.With(logSubsystem, "resolver"),
		udp:          &dns.Client{Net: "udp", Timeout: timeout},
		tcp:          &dns.Client{Net: "tcp", Timeout: timeout},
		ctx:          ctx,
		cancel:       cancel,
	}, nil
}

// ServeDNS answers one query from a sandbox. It implements dns.Handler.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if req.Response {
		return // never answer a response: that could start a loop
	}
	resp := r.respond(w.RemoteAddr(), req)

	_, overTCP := w.RemoteAddr().(*net.TCPAddr)
	fit(resp, req, !overTCP)
	if err := w.WriteMsg(resp); err != nil {
		r.log.Debug("write dns reply", logSource, w.RemoteAddr(), logError, err)
	}
}

// respond decides the reply to req, received from remote.
func (r *Resolver) respond(remote net.Addr, req *dns.Msg) *dns.Msg {
	src, ok := sourceAddr(remote)
	var sandbox string
	var allowed []string
	if ok {
		sandbox, allowed, ok = r.sandboxes.BySource(src)
	}
	if !ok {
		r.log.Warn("dns query refused", logSource, src.String(), logReason, "unknown source")
		return reply(req, dns.RcodeRefused)
	}

	if req.Opcode != dns.OpcodeQuery {
		return reply(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return reply(req, dns.RcodeFormatError)
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return reply(req, dns.RcodeBadVers)
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return reply(req, dns.RcodeRefused)
	}

	name := domain.Normalize(q.Name)
	qtype := dns.Type(q.Qtype).String()
	if !domain.MatchAny(allowed, name) {
		r.log.Warn("dns query denied",
			logSandbox, sandbox, logName, name, logType, qtype, logReason, "name not allowed")
		return reply(req, dns.RcodeNameError)
	}

	switch q.Qtype {
	case dns.TypeA:
		return r.resolveA(sandbox, req)
	case dns.TypeAAAA:
		// TODO: IPv6 answers and pins come with IPv6 capture. Until the BPF
		// programs redirect IPv6 connections to the proxy, an AAAA answer
		// would only make clients try a path that is refused, so allowed
		// names get an empty answer and clients fall back to IPv4.
		return reply(req, dns.RcodeSuccess)
	default:
		// MX, TXT, HTTPS/SVCB and the rest get an empty answer without asking
		// upstream: the proxy only needs addresses, and every other type
		// forwarded is one more channel for data to leave the sandbox.
		r.log.Debug("dns query answered empty",
			logSandbox, sandbox, logName, name, logType, qtype, logReason, "type not served")
		return reply(req, dns.RcodeSuccess)
	}
}

// reply returns an empty reply to req with rcode.
func reply(req *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	return resp
}

// fit adds an OPT record to resp if req had one, and truncates resp to what
// the client can take: over UDP, 512 bytes, or the size the client's OPT
// advertises capped at ednsSize.
func fit(resp, req *dns.Msg, udp bool) {
	limit := dns.MaxMsgSize
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(ednsSize, false)
		if udp {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
		}
	} else if udp {
		limit = dns.MinMsgSize
	}
	resp.Truncate(limit)

	// Truncate turns compression off when the message fits without it; it
	// costs little and keeps replies small, so turn it back on.
	resp.Compress = true
}

// sourceAddr returns the IP address of a query's sender, v4-mapped
// addresses unmapped.
func sourceAddr(remote net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := remote.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return netip.Addr{}, false
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.Addr{}, false
		}
	}
	addr := ap.Addr().Unmap()
	return addr, addr.IsValid()
}
