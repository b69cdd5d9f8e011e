// Package resolver is the DNS server keygate puts in front of every sandbox.
//
// All DNS a sandbox sends, over UDP or TCP and to whatever server it names,
// is redirected here. The resolver identifies the sandbox by the query's
// source address and answers under the sandbox's Policy:
//
//   - In allowlist mode, only names the policy lists (credential domains,
//     --allow domains, wildcards) are resolved. Every other name gets
//     NXDOMAIN, whatever the record type, without any query leaving the
//     host, so DNS cannot carry data to an attacker's name server.
//   - In open mode, A and AAAA queries for any name are resolved. Query names
//     still reach upstream name servers, so open mode accepts that channel;
//     Stats counts names that look like encoded data. Other record types are
//     REFUSED for names the policy does not list: TXT, NULL and the like are
//     the usual carriers of data both ways, and the proxy needs only
//     addresses.
//
// For a listed name, record types other than A and AAAA get an empty answer
// without asking upstream. AAAA queries are resolved only with Config.IPv6;
// otherwise they get an empty answer and clients fall back to IPv4.
//
// Resolved addresses in private, loopback and other internal ranges are
// dropped from the answers (DNS rebinding), and every address that is
// returned is first pinned to the asked name for the asking sandbox in a
// pin.Table. The TLS proxy lets a connection through only when such a pin
// maps its SNI name to the dialled address. The proxy checks pins only when a
// connection is made, so a pin that expires never cuts a connection already
// established.
//
// Upstream answers are cached by name and type for their TTL, capped at the
// pin table's maximum pin lifetime, and concurrent identical queries share
// one upstream exchange. Filtering and pinning happen per query, for the
// asking sandbox, whether the answer came from upstream or from the cache.
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

const (
	// DefaultTimeout bounds the upstream resolution of one query when
	// Config.Timeout is zero.
	DefaultTimeout = 2 * time.Second

	// DefaultCacheSize is the number of answers cached when
	// Config.CacheSize is zero.
	DefaultCacheSize = 10_000

	// DefaultNegativeTTL is how long a negative answer without an SOA record
	// is cached when Config.NegativeTTL is zero.
	DefaultNegativeTTL = 30 * time.Second

	// DefaultRecordRate is the number of warning and error records per
	// second and sandbox used when Config.RecordRate is zero.
	DefaultRecordRate = 10
)

// ednsSize is the UDP payload size the resolver advertises, to clients and
// upstream, and the most any UDP reply carries: the DNS Flag Day 2020 value,
// small enough to avoid IP fragmentation on common paths.
const ednsSize = 1232

// Keys of the resolver's structured log records.
const (
	logSubsystem  = "subsystem"
	logSandbox    = "sandbox"
	logSource     = "source"
	logName       = "name"
	logType       = "type"
	logReason     = "reason"
	logAnswers    = "answers"
	logDropped    = "dropped"
	logSuppressed = "suppressed"
	logCached     = "cached"
	logLong       = "long"
	logEncoded    = "encoded"
	logError      = "err"
)

var (
	// ErrClosed is returned by Serve when the Resolver has been shut down.
	ErrClosed = errors.New("resolver closed")

	// ErrConfig is wrapped by the errors New returns for an invalid Config.
	ErrConfig = errors.New("invalid resolver config")
)

// Policy is what one sandbox may resolve.
type Policy struct {
	// ID identifies the sandbox in pins, logs and denials. It must not be
	// empty.
	ID string

	// Allowed lists the domain patterns (see package domain) the sandbox
	// may resolve in allowlist mode, and query any record type of in open
	// mode. Nil allows none.
	Allowed []string

	// Open selects open mode: A and AAAA queries for any name are resolved.
	// False is allowlist mode.
	Open bool
}

// Sandboxes identifies the sandbox behind a query's source address.
type Sandboxes interface {
	// BySource returns the policy of the sandbox at source IP src; ok is
	// false for unknown sources. src is never a v4-mapped address.
	BySource(src netip.Addr) (p Policy, ok bool)
}

// Config configures a Resolver.
type Config struct {
	// Upstream is the "host:port" of the resolver allowed names are sent
	// to. Required.
	Upstream string

	// Sandboxes maps query sources to sandboxes and their policies. Required.
	Sandboxes Sandboxes

	// Pins receives a pin for every address returned to a sandbox; its
	// maximum pin lifetime also caps the TTLs the resolver returns and
	// caches. Required.
	Pins *pin.Table

	// AllowPrivate lists ranges whose addresses are returned even though
	// they are internal, for upstreams that serve test names on private
	// addresses. Nil means no exception.
	AllowPrivate []netip.Prefix

	// IPv6 enables AAAA answers and IPv6 pins. False answers every AAAA
	// query with no records, for hosts whose capture does not redirect
	// IPv6 connections to the proxy: an AAAA answer would only make clients
	// try a path that is refused.
	IPv6 bool

	// Timeout bounds the upstream resolution of one query, including a
	// retry over TCP after a truncated UDP reply. Zero means DefaultTimeout.
	Timeout time.Duration

	// CacheSize bounds the number of positive answers cached; negative
	// answers have a separate cache a quarter that size, so that a flood of
	// names that do not exist cannot evict the names that do. Zero means
	// DefaultCacheSize.
	CacheSize int

	// NegativeTTL is how long an NXDOMAIN or empty answer is cached when
	// upstream sends no SOA record to take the time from. Zero means
	// DefaultNegativeTTL. Negative answers are never cached longer than
	// maxNegativeTTL.
	NegativeTTL time.Duration

	// RecordRate bounds, per sandbox and per kind (denials, dropped
	// answers, upstream failures), the warning and error records logged
	// and the OnDeny calls made, per second. Records over the rate are
	// counted and the count is reported with the next record of that kind.
	// Zero means DefaultRecordRate.
	RecordRate int

	// OnDeny, if not nil, is called for every denied query, subject to
	// RecordRate, for audit records. It is called on the goroutine serving
	// the query, before the reply is sent, so it must not block for long.
	OnDeny func(Denial)

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
	switch {
	case c.Timeout < 0:
		return fmt.Errorf("%w: negative timeout %v", ErrConfig, c.Timeout)
	case c.NegativeTTL < 0:
		return fmt.Errorf("%w: negative NegativeTTL %v", ErrConfig, c.NegativeTTL)
	case c.CacheSize < 0:
		return fmt.Errorf("%w: negative cache size %d", ErrConfig, c.CacheSize)
	case c.RecordRate < 0:
		return fmt.Errorf("%w: negative record rate %d", ErrConfig, c.RecordRate)
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
	ipv6         bool
	timeout      time.Duration
	maxTTL       uint32 // the pin table's maximum lifetime, in seconds
	negativeTTL  uint32 // seconds
	onDeny       func(Denial)
	log          *slog.Logger
	udp, tcp     *dns.Client
	now          func() time.Time // time.Now; tests replace it before serving

	cache    *cache     // positive answers
	negative *cache     // NXDOMAIN and empty answers
	flights  *collapser // upstream exchanges in flight
	limits   *limiter   // of warning and error records
	stats    counters

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
	timeout := orDefault(cfg.Timeout, DefaultTimeout)
	cacheSize := orDefault(cfg.CacheSize, DefaultCacheSize)
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
		ipv6:         cfg.IPv6,
		timeout:      timeout,
		maxTTL:       seconds(cfg.Pins.MaxLifetime()),
		negativeTTL:  seconds(orDefault(cfg.NegativeTTL, DefaultNegativeTTL)),
		onDeny:       cfg.OnDeny,
		log:          logger.With(logSubsystem, "resolver"),
		udp:          &dns.Client{Net: "udp", Timeout: timeout},
		tcp:          &dns.Client{Net: "tcp", Timeout: timeout},
		now:          time.Now,
		cache:        newCache(cacheSize),
		negative:     newCache(cacheSize/4 + 1),
		flights:      newCollapser(),
		limits:       newLimiter(orDefault(cfg.RecordRate, DefaultRecordRate)),
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
	var pol Policy
	if ok {
		pol, ok = r.sandboxes.BySource(src)
	}
	if !ok || pol.ID == "" {
		r.stats.refused.Add(1)
		name, qtype := question(req)
		r.deny(Denial{Name: name, Type: qtype, Reason: ReasonUnknownSource}, logSource, src.String())
		return reply(req, dns.RcodeRefused)
	}

	if rcode := checkQuery(req); rcode != dns.RcodeSuccess {
		r.stats.malformed.Add(1)
		return reply(req, rcode)
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		r.stats.refused.Add(1)
		return reply(req, dns.RcodeRefused)
	}

	name := domain.Normalize(q.Name)
	r.inspect(pol.ID, name)
	if rcode, reason := decide(pol, name, q.Qtype); reason != "" {
		if rcode == dns.RcodeNameError {
			r.stats.nxdomainDenied.Add(1)
		} else {
			r.stats.refused.Add(1)
		}
		r.deny(Denial{Sandbox: pol.ID, Name: name, Type: typeString(q.Qtype), Reason: reason})
		return reply(req, rcode)
	}

	if q.Qtype == dns.TypeA || (q.Qtype == dns.TypeAAAA && r.ipv6) {
		return r.resolve(pol.ID, req)
	}
	// MX, TXT, HTTPS/SVCB and the rest, and AAAA without IPv6, get an empty
	// answer without asking upstream: the proxy only needs the addresses it
	// can pin, and every other type forwarded is one more channel for data
	// to leave the sandbox.
	r.stats.answered.Add(1)
	r.log.Debug("dns query answered empty",
		logSandbox, pol.ID, logName, name, logType, typeString(q.Qtype), logReason, "type not served")
	return reply(req, dns.RcodeSuccess)
}

// checkQuery returns the error rcode for a request the resolver does not
// handle, or RcodeSuccess.
func checkQuery(req *dns.Msg) int {
	switch {
	case req.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented
	case len(req.Question) != 1:
		return dns.RcodeFormatError
	}
	if opt := req.IsEdns0(); opt != nil && opt.Version() != 0 {
		return dns.RcodeBadVers
	}
	return dns.RcodeSuccess
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

// question returns the normalised name and the type of req's first
// question, or empty strings.
func question(req *dns.Msg) (name, qtype string) {
	if len(req.Question) == 0 {
		return "", ""
	}
	q := req.Question[0]
	return domain.Normalize(q.Name), typeString(q.Qtype)
}

func typeString(qtype uint16) string { return dns.Type(qtype).String() }

// orDefault returns v, or def if v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// seconds converts d to whole seconds for a TTL, saturating.
func seconds(d time.Duration) uint32 {
	return uint32(min(d/time.Second, 1<<32-1))
}
