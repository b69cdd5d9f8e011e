package resolver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/pin"
)

// defaultPolicy is what sandbox sb1, at 127.0.0.1, may resolve in most tests.
var defaultPolicy = []string{"api.example.test", "*.example.test"}

// fakeSandboxes maps source addresses to sandbox policies.
type fakeSandboxes map[netip.Addr]Policy

func (f fakeSandboxes) BySource(src netip.Addr) (Policy, bool) {
	p, ok := f[src]
	return p, ok
}

// loopbackSandbox returns Sandboxes that know only 127.0.0.1, as "sb1" in
// allowlist mode.
func loopbackSandbox(allowed []string) fakeSandboxes {
	return fakeSandboxes{
		netip.MustParseAddr("127.0.0.1"): {ID: "sb1", Allowed: allowed},
	}
}

// upstream is a fake recursive resolver on loopback serving a small zone and
// counting the questions it receives.
type upstream struct {
	addr string

	// gate, if not nil, holds every query for slow.example.test until it
	// is closed.
	gate chan struct{}

	mu      sync.Mutex
	queries map[string]int // "name/TYPE" → count; guarded by mu
}

// zone holds the fake upstream's records by lower-case owner name.
var zone = map[string][]string{
	"api.example.test.": {
		"api.example.test. 300 IN A 198.51.100.10",
		"api.example.test. 300 IN AAAA 2001:db8::10",
	},
	"alias.example.test.":   {"alias.example.test. 60 IN CNAME api.example.test."},
	"alias2.example.test.":  {"alias2.example.test. 30 IN CNAME alias.example.test."},
	"private.example.test.": {"private.example.test. 300 IN A 10.1.2.3"},
	"local.example.test.":   {"local.example.test. 300 IN A 127.0.0.1"},
	"mixed.example.test.": {
		"mixed.example.test. 300 IN A 198.51.100.20",
		"mixed.example.test. 300 IN A 192.168.1.1",
		"mixed.example.test. 300 IN A 169.254.169.254",
	},
	"loop.example.test.":  {"loop.example.test. 300 IN CNAME loop2.example.test."},
	"loop2.example.test.": {"loop2.example.test. 300 IN CNAME loop.example.test."},
	"big.example.test.":   bigRRset(100),
	"mixed6.example.test.": {
		"mixed6.example.test. 300 IN AAAA 2001:db8::20",
		"mixed6.example.test. 300 IN AAAA ::1",
		"mixed6.example.test. 300 IN AAAA fe80::1",
		"mixed6.example.test. 300 IN AAAA fd00::1",
		"mixed6.example.test. 300 IN AAAA ::ffff:10.0.0.1",
		"mixed6.example.test. 300 IN AAAA 64:ff9b::a00:1",     // NAT64 of 10.0.0.1
		"mixed6.example.test. 300 IN AAAA 64:ff9b::c633:6414", // NAT64 of 198.51.100.20
	},
	"weeks.example.test.":  {"weeks.example.test. 1814400 IN A 198.51.100.40"},
	"zero.example.test.":   {"zero.example.test. 0 IN A 198.51.100.50"},
	"nodata.example.test.": {"nodata.example.test. 300 IN TXT \"no address\""},
	"slow.example.test.":   {"slow.example.test. 300 IN A 198.51.100.70"},
	"public.open.test.":    {"public.open.test. 300 IN A 198.51.100.60"},
	"private.open.test.":   {"private.open.test. 300 IN A 10.9.9.9"},
}

// negativeSOA is the SOA record the fake upstream sends with NXDOMAIN for
// withsoa.example.test: negative answers live min(3600, 10) seconds.
const negativeSOA = "example.test. 3600 IN SOA ns.example.test. host.example.test. 1 7200 900 1209600 10"

func bigRRset(n int) []string {
	var rrs []string
	for i := range n {
		rrs = append(rrs, fmt.Sprintf("big.example.test. 300 IN A 203.0.113.%d", i+1))
	}
	return rrs
}

// startUpstream runs the fake upstream on 127.0.0.1 over UDP and TCP.
func startUpstream(t testing.TB) *upstream {
	t.Helper()
	return startGatedUpstream(t, nil)
}

// startGatedUpstream runs the fake upstream with gate (see upstream.gate).
func startGatedUpstream(t testing.TB, gate chan struct{}) *upstream {
	t.Helper()
	u := &upstream{gate: gate, queries: make(map[string]int)}
	pc, ln := listen(t)
	u.addr = pc.LocalAddr().String()

	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(u.serve)},
		{Listener: ln, Handler: dns.HandlerFunc(u.serve)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return u
}

func (u *upstream) serve(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	u.mu.Lock()
	u.queries[name+"/"+dns.TypeToString[q.Qtype]]++
	u.mu.Unlock()

	if name == "slow.example.test." && u.gate != nil {
		<-u.gate
	}

	resp := new(dns.Msg)
	resp.SetReply(req)
	switch {
	case strings.HasPrefix(name, "bench-"):
		if q.Qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, mustRR(name+" 300 IN A 198.51.100.80"))
		}
	case name == "withsoa.example.test.":
		resp.Rcode = dns.RcodeNameError
		resp.Ns = append(resp.Ns, mustRR(negativeSOA))
	case name == "servfail.example.test.":
		resp.Rcode = dns.RcodeServerFailure
	case name == "stray.example.test.":
		// An answer that does not lead from the asked name anywhere.
		resp.Answer = append(resp.Answer, mustRR("other.example.test. 300 IN A 198.51.100.99"))
	default:
		resp.Answer = resolveZone(name, q.Qtype)
		if len(resp.Answer) == 0 && zone[name] == nil {
			resp.Rcode = dns.RcodeNameError
		}
	}

	size := dns.MinMsgSize
	if opt := req.IsEdns0(); opt != nil {
		size = int(opt.UDPSize())
		resp.SetEdns0(opt.UDPSize(), false)
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = dns.MaxMsgSize
	}
	resp.Truncate(size)
	_ = w.WriteMsg(resp)
}

// resolveZone returns the records of name of type qtype, following CNAMEs
// through the zone as a recursive resolver would.
func resolveZone(name string, qtype uint16) []dns.RR {
	var out []dns.RR
	for range 10 {
		var next string
		for _, s := range zone[name] {
			rr := mustRR(s)
			switch {
			case rr.Header().Rrtype == qtype:
				out = append(out, rr)
			case rr.Header().Rrtype == dns.TypeCNAME:
				out = append(out, rr)
				next = rr.(*dns.CNAME).Target
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return out
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// count returns how many questions for name of type qtype the upstream saw.
func (u *upstream) count(name string, qtype uint16) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.queries[dns.Fqdn(strings.ToLower(name))+"/"+dns.TypeToString[qtype]]
}

// total returns how many questions the upstream saw.
func (u *upstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.queries {
		n += c
	}
	return n
}

// listen binds a UDP and a TCP socket on the same loopback port.
func listen(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the TCP port is taken; try another
			continue
		}
		return pc, ln
	}
	t.Fatal("no loopback port free for both udp and tcp")
	return nil, nil
}

// harness is a Resolver serving on loopback with its pins and captured logs.
type harness struct {
	r    *Resolver
	addr string
	pins *pin.Table
	logs *logBuffer
}

// startResolver runs a Resolver for cfg on loopback; cfg.Pins, Logger and
// Sandboxes are filled in when empty.
func startResolver(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{logs: &logBuffer{}}
	if cfg.Pins == nil {
		cfg.Pins = pin.New(pin.Config{})
	}
	if cfg.Sandboxes == nil {
		cfg.Sandboxes = loopbackSandbox(defaultPolicy)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.pins = cfg.Pins

	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.r = r
	pc, ln := listen(t)
	h.addr = pc.LocalAddr().String()

	served := make(chan error, 1)
	go func() { served <- r.Serve(pc, ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

// query sends one question to the harness over network ("udp" or "tcp").
func (h *harness) query(t *testing.T, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	return h.exchange(t, network, m)
}

func (h *harness) exchange(t *testing.T, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	resp, _, err := c.Exchange(m, h.addr)
	if err != nil {
		t.Fatalf("query %s over %s: %v", m.Question[0].Name, network, err)
	}
	if resp.Id != m.Id {
		t.Errorf("reply ID %d, want the query's %d", resp.Id, m.Id)
	}
	return resp
}

// answerAddrs returns the A and AAAA records of resp as "owner address".
func answerAddrs(resp *dns.Msg) []string {
	var out []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.Hdr.Name+" "+rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.Hdr.Name+" "+rr.AAAA.String())
		}
	}
	return out
}

// logBuffer collects JSON log lines from concurrent handlers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the decoded log records with message msg.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("decode log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// clock is a settable fake time source, shared by a Resolver and its pins.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sources of the sandboxes direct tests query from.
const (
	srcSB1  = "127.0.0.1" // sb1, allowlist mode, defaultPolicy
	srcSB2  = "127.0.0.2" // sb2, allowlist mode, defaultPolicy
	srcOpen = "127.0.0.3" // sbOpen, open mode, allowed only api.example.test
)

// directSandboxes are the sandboxes at srcSB1, srcSB2 and srcOpen.
var directSandboxes = fakeSandboxes{
	netip.MustParseAddr(srcSB1):  {ID: "sb1", Allowed: defaultPolicy},
	netip.MustParseAddr(srcSB2):  {ID: "sb2", Allowed: defaultPolicy},
	netip.MustParseAddr(srcOpen): {ID: "sbOpen", Allowed: []string{"api.example.test"}, Open: true},
}

// direct is a Resolver called through ServeDNS, without sockets, on a fake
// clock that its pin table shares.
type direct struct {
	r    *Resolver
	pins *pin.Table
	logs *logBuffer
	clk  *clock
}

// newDirect returns a direct Resolver for cfg; Pins, Sandboxes (default
// directSandboxes) and Logger are filled in when empty.
func newDirect(t *testing.T, cfg Config) *direct {
	t.Helper()
	d := &direct{logs: &logBuffer{}, clk: newClock()}
	if cfg.Pins == nil {
		cfg.Pins = pin.New(pin.Config{Now: d.clk.Now})
	}
	if cfg.Sandboxes == nil {
		cfg.Sandboxes = directSandboxes
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d.pins = cfg.Pins

	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	r.now = d.clk.Now
	d.r = r
	t.Cleanup(func() { shutdown(t, r) })
	return d
}

// query asks one question from src through ServeDNS, as over UDP with a
// large EDNS0 buffer, and returns the reply.
func (d *direct) query(t *testing.T, src, name string, qtype uint16) *dns.Msg {
	t.Helper()
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(name), qtype)
	req.SetEdns0(4096, false)
	w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(src), Port: 5353}}
	d.r.ServeDNS(w, req)
	if w.reply == nil {
		t.Fatalf("no reply to %s %s", name, dns.TypeToString[qtype])
	}
	return w.reply
}

// answerTTLs returns the TTLs of the records in resp's answer section.
func answerTTLs(resp *dns.Msg) []uint32 {
	var out []uint32
	for _, rr := range resp.Answer {
		out = append(out, rr.Header().Ttl)
	}
	return out
}

type pinWant struct {
	addr, name string
}

func TestQueries(t *testing.T) {
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
		wantAns   []string // "owner address"
		wantPins  []pinWant
		upstream  int // questions the upstream must see for qname
	}{
		{
			name: "allowed A", qname: "api.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"api.example.test. 198.51.100.10"},
			wantPins:  []pinWant{{"198.51.100.10", "api.example.test"}},
			upstream:  1,
		},
		{
			name: "mixed case", qname: "API.Example.TEST", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"API.Example.TEST. 198.51.100.10"},
			wantPins:  []pinWant{{"198.51.100.10", "api.example.test"}},
			upstream:  1,
		},
		{
			name: "cname pinned under asked name", qname: "alias.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"alias.example.test. 198.51.100.10"},
			wantPins:  []pinWant{{"198.51.100.10", "alias.example.test"}},
			upstream:  1,
		},
		{
			name: "two cnames", qname: "alias2.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"alias2.example.test. 198.51.100.10"},
			wantPins:  []pinWant{{"198.51.100.10", "alias2.example.test"}},
			upstream:  1,
		},
		{
			name: "unlisted A", qname: "evil.attacker.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError,
		},
		{
			name: "unlisted TXT", qname: "secret-data.attacker.test", qtype: dns.TypeTXT,
			wantRcode: dns.RcodeNameError,
		},
		{
			name: "unlisted deeper name", qname: "a.b.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError,
		},
		{
			name: "unlisted bare suffix", qname: "example.test", qtype: dns.TypeANY,
			wantRcode: dns.RcodeNameError,
		},
		{
			name: "private answer dropped", qname: "private.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess, upstream: 1,
		},
		{
			name: "loopback answer dropped", qname: "local.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess, upstream: 1,
		},
		{
			name: "public kept, internal dropped", qname: "mixed.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"mixed.example.test. 198.51.100.20"},
			wantPins:  []pinWant{{"198.51.100.20", "mixed.example.test"}},
			upstream:  1,
		},
		{
			name: "record off the chain ignored", qname: "stray.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess, upstream: 1,
		},
		{
			name: "cname loop", qname: "loop.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess, upstream: 1,
		},
		{
			name: "upstream nxdomain", qname: "missing.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError, upstream: 1,
		},
		{
			name: "upstream servfail", qname: "servfail.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeServerFailure, upstream: 1,
		},
		{
			name: "allowed AAAA answered empty", qname: "api.example.test", qtype: dns.TypeAAAA,
			wantRcode: dns.RcodeSuccess,
		},
		{
			name: "allowed TXT answered empty", qname: "api.example.test", qtype: dns.TypeTXT,
			wantRcode: dns.RcodeSuccess,
		},
		{
			name: "allowed HTTPS answered empty", qname: "api.example.test", qtype: dns.TypeHTTPS,
			wantRcode: dns.RcodeSuccess,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t)
			h := startResolver(t, Config{Upstream: up.addr})

			resp := h.query(t, "udp", tt.qname, tt.qtype)
			if resp.Rcode != tt.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if got := answerAddrs(resp); !slices.Equal(got, tt.wantAns) {
				t.Errorf("answers %q, want %q", got, tt.wantAns)
			}
			if !resp.Response || !resp.RecursionDesired || !resp.RecursionAvailable {
				t.Errorf("flags QR=%v RD=%v RA=%v, want all set",
					resp.Response, resp.RecursionDesired, resp.RecursionAvailable)
			}
			if got := up.count(tt.qname, tt.qtype); got != tt.upstream {
				t.Errorf("upstream saw %d questions for %s, want %d", got, tt.qname, tt.upstream)
			}
			if got := up.total(); got != tt.upstream {
				t.Errorf("upstream saw %d questions in all, want %d", got, tt.upstream)
			}
			if got := h.pins.Len(); got != len(tt.wantPins) {
				t.Errorf("%d pins, want %d", got, len(tt.wantPins))
			}
			for _, p := range tt.wantPins {
				if !h.pins.Check("sb1", netip.MustParseAddr(p.addr), p.name) {
					t.Errorf("no pin (sb1, %s, %s)", p.addr, p.name)
				}
				if h.pins.Check("sb2", netip.MustParseAddr(p.addr), p.name) {
					t.Errorf("pin (sb1, %s, %s) satisfies sb2", p.addr, p.name)
				}
			}
		})
	}
}

func TestAnswerTTL(t *testing.T) {
	tests := []struct {
		qname string
		want  uint32
	}{
		{"api.example.test", 300},
		{"alias.example.test", 60},  // the CNAME's TTL is the chain's minimum
		{"alias2.example.test", 30}, // likewise the first link's
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			up := startUpstream(t)
			h := startResolver(t, Config{Upstream: up.addr})

			resp := h.query(t, "udp", tt.qname, dns.TypeA)
			if len(resp.Answer) != 1 {
				t.Fatalf("answers %v, want one", resp.Answer)
			}
			if got := resp.Answer[0].Header().Ttl; got != tt.want {
				t.Errorf("TTL %d, want %d", got, tt.want)
			}
		})
	}
}

func TestDecisionLogs(t *testing.T) {
	up := startUpstream(t)
	h := startResolver(t, Config{Upstream: up.addr})

	h.query(t, "udp", "secret.attacker.test", dns.TypeTXT)
	denied := h.logs.records(t, "dns query denied")
	if len(denied) != 1 {
		t.Fatalf("%d denial records, want 1", len(denied))
	}
	want := map[string]any{
		"level": "WARN", "msg": "dns query denied", "subsystem": "resolver",
		"sandbox": "sb1", "name": "secret.attacker.test", "type": "TXT", "reason": "name not allowed",
	}
	rec := denied[0]
	delete(rec, "time")
	if fmt.Sprint(rec) != fmt.Sprint(want) {
		t.Errorf("denial record %v, want %v", rec, want)
	}

	h.query(t, "udp", "private.example.test", dns.TypeA)
	dropped := h.logs.records(t, "dns answer dropped")
	if len(dropped) != 1 || dropped[0]["level"] != "WARN" || dropped[0]["dropped"] != 1.0 {
		t.Errorf("rebinding records %v, want one WARN with dropped=1", dropped)
	}
}

func TestNarrowPolicy(t *testing.T) {
	tests := []struct {
		qname     string
		wantRcode int
		upstream  int
	}{
		{"api.example.test", dns.RcodeSuccess, 1},
		{"alias.example.test", dns.RcodeNameError, 0},
		{"other.example.test", dns.RcodeNameError, 0},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			up := startUpstream(t)
			h := startResolver(t, Config{
				Upstream:  up.addr,
				Sandboxes: loopbackSandbox([]string{"api.example.test"}),
			})

			resp := h.query(t, "udp", tt.qname, dns.TypeA)
			if resp.Rcode != tt.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if got := up.total(); got != tt.upstream {
				t.Errorf("upstream saw %d questions, want %d", got, tt.upstream)
			}
		})
	}
}

func TestAllowPrivate(t *testing.T) {
	tests := []struct {
		name     string
		allow    []string
		qname    string
		wantAddr string // "" for no answer
	}{
		{"private allowed", []string{"10.0.0.0/8"}, "private.example.test", "10.1.2.3"},
		{"loopback allowed", []string{"127.0.0.0/8"}, "local.example.test", "127.0.0.1"},
		{"other range allowed", []string{"192.168.0.0/16"}, "private.example.test", ""},
		{"exact host allowed", []string{"10.1.2.3/32"}, "private.example.test", "10.1.2.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var allow []netip.Prefix
			for _, s := range tt.allow {
				allow = append(allow, netip.MustParsePrefix(s))
			}
			up := startUpstream(t)
			h := startResolver(t, Config{Upstream: up.addr, AllowPrivate: allow})

			resp := h.query(t, "udp", tt.qname, dns.TypeA)
			var want []string
			if tt.wantAddr != "" {
				want = []string{dns.Fqdn(tt.qname) + " " + tt.wantAddr}
			}
			if got := answerAddrs(resp); !slices.Equal(got, want) {
				t.Errorf("answers %q, want %q", got, want)
			}
			pinned := tt.wantAddr != "" && h.pins.Check("sb1", netip.MustParseAddr(tt.wantAddr), tt.qname)
			if pinned != (tt.wantAddr != "") {
				t.Errorf("pinned = %v, want %v", pinned, tt.wantAddr != "")
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	// A bound socket nobody reads: queries to it are never answered.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	// A port nothing listens on: queries are refused by the kernel.
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()

	tests := []struct {
		name     string
		upstream string
	}{
		{"no answer", silent.LocalAddr().String()},
		{"port closed", closedAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = 300 * time.Millisecond
			h := startResolver(t, Config{Upstream: tt.upstream, Timeout: timeout})

			start := time.Now()
			resp := h.query(t, "udp", "api.example.test", dns.TypeA)
			elapsed := time.Since(start)
			if resp.Rcode != dns.RcodeServerFailure {
				t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
			}
			if elapsed > timeout+time.Second {
				t.Errorf("answered after %v, want within about %v", elapsed, timeout)
			}
			if h.pins.Len() != 0 {
				t.Error("a failed resolution left a pin")
			}
			if got := h.logs.records(t, "dns upstream failed"); len(got) != 1 || got[0]["level"] != "ERROR" {
				t.Errorf("failure records %v, want one ERROR", got)
			}
		})
	}
}

func TestTCP(t *testing.T) {
	up := startUpstream(t)
	h := startResolver(t, Config{Upstream: up.addr})

	resp := h.query(t, "tcp", "api.example.test", dns.TypeA)
	if got, want := answerAddrs(resp), []string{"api.example.test. 198.51.100.10"}; !slices.Equal(got, want) {
		t.Errorf("answers %q, want %q", got, want)
	}
	if !h.pins.Check("sb1", netip.MustParseAddr("198.51.100.10"), "api.example.test") {
		t.Error("no pin after a query over TCP")
	}

	resp = h.query(t, "tcp", "evil.attacker.test", dns.TypeA)
	if resp.Rcode != dns.RcodeNameError {
		t.Errorf("unlisted name over TCP: rcode %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
}

func TestTruncation(t *testing.T) {
	up := startUpstream(t)
	h := startResolver(t, Config{Upstream: up.addr})

	tests := []struct {
		name    string
		network string
		edns    uint16 // 0 for no OPT record
		wantTC  bool
		wantMax int // most bytes the reply may have
		wantAll bool
		wantOPT bool
	}{
		{"udp without edns", "udp", 0, true, dns.MinMsgSize, false, false},
		{"udp with small edns", "udp", 800, true, 800, false, true},
		{"udp with large edns", "udp", 4096, true, ednsSize, false, true},
		{"tcp", "tcp", 0, false, dns.MaxMsgSize, true, false},
		{"tcp with edns", "tcp", 4096, false, dns.MaxMsgSize, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("big.example.test.", dns.TypeA)
			if tt.edns != 0 {
				m.SetEdns0(tt.edns, false)
			}
			resp := h.exchange(t, tt.network, m)

			if resp.Truncated != tt.wantTC {
				t.Errorf("TC = %v, want %v", resp.Truncated, tt.wantTC)
			}
			resp.Compress = true // measure the reply as sent
			if n := resp.Len(); n > tt.wantMax {
				t.Errorf("reply is %d bytes, want at most %d", n, tt.wantMax)
			}
			if got := len(answerAddrs(resp)); tt.wantAll && got != 100 {
				t.Errorf("%d answers, want all 100", got)
			}
			opt := resp.IsEdns0()
			if (opt != nil) != tt.wantOPT {
				t.Fatalf("OPT present = %v, want %v", opt != nil, tt.wantOPT)
			}
			if opt != nil && opt.UDPSize() != ednsSize {
				t.Errorf("OPT UDP size %d, want %d", opt.UDPSize(), ednsSize)
			}
		})
	}

	// The upstream's UDP reply was truncated too, so the resolver must have
	// asked again over TCP and pinned every address.
	if got := len(h.pins.Names("sb1", netip.MustParseAddr("203.0.113.100"))); got != 1 {
		t.Errorf("last address of the big answer has %d pins, want 1", got)
	}
}

// recorder is a dns.ResponseWriter that keeps the reply, for calling
// ServeDNS directly with any source address.
type recorder struct {
	dns.ResponseWriter // nil; calling an unimplemented method panics
	remote             net.Addr
	reply              *dns.Msg
}

func (r *recorder) RemoteAddr() net.Addr      { return r.remote }
func (r *recorder) LocalAddr() net.Addr       { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) WriteMsg(m *dns.Msg) error { r.reply = m; return nil }

func TestServeDNSRejects(t *testing.T) {
	sandboxes := loopbackSandbox(defaultPolicy)
	r, err := New(Config{Upstream: "127.0.0.1:1", Sandboxes: sandboxes, Pins: pin.New(pin.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	loopback := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	mapped := &net.UDPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 5353}

	question := func(name string, qtype, qclass uint16) dns.Question {
		return dns.Question{Name: name, Qtype: qtype, Qclass: qclass}
	}
	tests := []struct {
		name      string
		remote    net.Addr
		questions []dns.Question
		opcode    int
		edns      int // OPT version, -1 for none
		wantRcode int
	}{
		{
			name:      "unknown source",
			remote:    &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5353},
			questions: []dns.Question{question("api.example.test.", dns.TypeA, dns.ClassINET)},
			edns:      -1, wantRcode: dns.RcodeRefused,
		},
		{
			name:      "unknown source over tcp",
			remote:    &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5353},
			questions: []dns.Question{question("api.example.test.", dns.TypeA, dns.ClassINET)},
			edns:      -1, wantRcode: dns.RcodeRefused,
		},
		{
			name: "no question", remote: loopback,
			edns: -1, wantRcode: dns.RcodeFormatError,
		},
		{
			name:   "two questions",
			remote: loopback,
			questions: []dns.Question{
				question("api.example.test.", dns.TypeA, dns.ClassINET),
				question("evil.attacker.test.", dns.TypeA, dns.ClassINET),
			},
			edns: -1, wantRcode: dns.RcodeFormatError,
		},
		{
			name: "chaos class", remote: loopback,
			questions: []dns.Question{question("version.bind.", dns.TypeTXT, dns.ClassCHAOS)},
			edns:      -1, wantRcode: dns.RcodeRefused,
		},
		{
			name: "update opcode", remote: loopback, opcode: dns.OpcodeUpdate,
			questions: []dns.Question{question("example.test.", dns.TypeSOA, dns.ClassINET)},
			edns:      -1, wantRcode: dns.RcodeNotImplemented,
		},
		{
			name: "edns version 1", remote: loopback, edns: 1,
			questions: []dns.Question{question("api.example.test.", dns.TypeA, dns.ClassINET)},
			wantRcode: dns.RcodeBadVers,
		},
		{
			name: "v4-mapped source is the v4 sandbox", remote: mapped,
			questions: []dns.Question{question("evil.attacker.test.", dns.TypeA, dns.ClassINET)},
			edns:      -1, wantRcode: dns.RcodeNameError,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &dns.Msg{Question: tt.questions}
			req.Id = dns.Id()
			req.Opcode = tt.opcode
			req.RecursionDesired = true
			if tt.edns >= 0 {
				req.SetEdns0(1232, false)
				req.IsEdns0().SetVersion(uint8(tt.edns))
			}
			w := &recorder{remote: tt.remote}
			r.ServeDNS(w, req)

			if w.reply == nil {
				t.Fatal("no reply")
			}
			if w.reply.Rcode != tt.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[w.reply.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if w.reply.Id != req.Id || !w.reply.Response {
				t.Errorf("reply ID %d QR %v, want ID %d QR set", w.reply.Id, w.reply.Response, req.Id)
			}
			if _, err := w.reply.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
		})
	}
}

func TestServeDNSIgnoresResponses(t *testing.T) {
	r, err := New(Config{Upstream: "127.0.0.1:1", Sandboxes: loopbackSandbox(defaultPolicy), Pins: pin.New(pin.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	req := new(dns.Msg)
	req.SetQuestion("api.example.test.", dns.TypeA)
	req.Response = true
	w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
	r.ServeDNS(w, req)
	if w.reply != nil {
		t.Errorf("answered a response: %v", w.reply)
	}
}

func TestNewValidates(t *testing.T) {
	sandboxes := loopbackSandbox(defaultPolicy)
	pins := pin.New(pin.Config{})
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"complete", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins}, true},
		{"no upstream", Config{Sandboxes: sandboxes, Pins: pins}, false},
		{"upstream without port", Config{Upstream: "127.0.0.1", Sandboxes: sandboxes, Pins: pins}, false},
		{"no sandboxes", Config{Upstream: "127.0.0.1:53", Pins: pins}, false},
		{"no pins", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes}, false},
		{"negative timeout", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins, Timeout: -1}, false},
		{"negative ttl", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins, NegativeTTL: -1}, false},
		{"negative cache", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins, CacheSize: -1}, false},
		{"negative rate", Config{Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins, RecordRate: -1}, false},
		{"all knobs", Config{
			Upstream: "127.0.0.1:53", Sandboxes: sandboxes, Pins: pins, IPv6: true, Timeout: time.Second,
			CacheSize: 10, NegativeTTL: time.Second, RecordRate: 1, OnDeny: func(Denial) {},
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}
