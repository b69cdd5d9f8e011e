package resolver

import (
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestChainAddrs(t *testing.T) {
	tests := []struct {
		name    string
		answer  []string
		qname   string
		qtype   uint16 // 0 for A
		want    []string
		wantTTL uint32
	}{
		{
			name:    "direct",
			answer:  []string{"a.test. 300 IN A 192.0.2.1", "a.test. 200 IN A 192.0.2.2"},
			qname:   "a.test.",
			want:    []string{"192.0.2.1", "192.0.2.2"},
			wantTTL: 200,
		},
		{
			name: "chain out of order",
			answer: []string{
				"c.test. 300 IN A 192.0.2.3",
				"b.test. 50 IN CNAME c.test.",
				"a.test. 100 IN CNAME b.test.",
			},
			qname:   "a.test.",
			want:    []string{"192.0.2.3"},
			wantTTL: 50,
		},
		{
			name:    "case-insensitive owners",
			answer:  []string{"A.Test. 60 IN CNAME B.TEST.", "b.test. 300 IN A 192.0.2.4"},
			qname:   "a.TEST.",
			want:    []string{"192.0.2.4"},
			wantTTL: 60,
		},
		{
			name:   "records off the chain ignored",
			answer: []string{"a.test. 60 IN CNAME b.test.", "a.test. 60 IN A 192.0.2.9", "x.test. 60 IN A 192.0.2.8"},
			qname:  "a.test.",
		},
		{
			name:    "duplicates collapsed",
			answer:  []string{"a.test. 60 IN A 192.0.2.1", "a.test. 60 IN A 192.0.2.1"},
			qname:   "a.test.",
			want:    []string{"192.0.2.1"},
			wantTTL: 60,
		},
		{
			name:   "loop ends",
			answer: []string{"a.test. 60 IN CNAME b.test.", "b.test. 60 IN CNAME a.test."},
			qname:  "a.test.",
		},
		{
			name:   "other types ignored",
			answer: []string{"a.test. 60 IN AAAA 2001:db8::1", "a.test. 60 IN TXT \"x\""},
			qname:  "a.test.",
		},
		{
			name:    "aaaa through a cname",
			answer:  []string{"a.test. 60 IN CNAME b.test.", "b.test. 30 IN AAAA 2001:db8::1", "b.test. 300 IN AAAA 2001:db8::2"},
			qname:   "a.test.",
			qtype:   dns.TypeAAAA,
			want:    []string{"2001:db8::1", "2001:db8::2"},
			wantTTL: 30,
		},
		{
			name:    "aaaa ignores a",
			answer:  []string{"a.test. 60 IN A 192.0.2.1", "a.test. 60 IN AAAA 2001:db8::1"},
			qname:   "a.test.",
			qtype:   dns.TypeAAAA,
			want:    []string{"2001:db8::1"},
			wantTTL: 60,
		},
		{
			name:    "v4-mapped aaaa kept as given",
			answer:  []string{"a.test. 60 IN AAAA ::ffff:192.0.2.1"},
			qname:   "a.test.",
			qtype:   dns.TypeAAAA,
			want:    []string{"::ffff:192.0.2.1"},
			wantTTL: 60,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answer []dns.RR
			for _, s := range tt.answer {
				answer = append(answer, mustRR(s))
			}
			qtype := tt.qtype
			if qtype == 0 {
				qtype = dns.TypeA
			}
			addrs, ttl := chainAddrs(answer, tt.qname, qtype)

			var got []string
			for _, a := range addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("addresses %q, want %q", got, tt.want)
			}
			if ttl != tt.wantTTL {
				t.Errorf("TTL %d, want %d", ttl, tt.wantTTL)
			}
			for _, a := range addrs {
				if qtype == dns.TypeA && (a != a.Unmap() || !a.Is4()) {
					t.Errorf("address %v is not plain IPv4", a)
				}
			}
		})
	}
}

func TestNegativeTTLOf(t *testing.T) {
	soa := func(ttl, minttl uint32) dns.RR {
		return &dns.SOA{
			Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  "ns.test.", Mbox: "host.test.", Minttl: minttl,
		}
	}
	tests := []struct {
		name string
		ns   []dns.RR
		want uint32
	}{
		{"no soa", nil, 30},
		{"soa minimum", []dns.RR{soa(3600, 10)}, 10},
		{"soa ttl", []dns.RR{soa(20, 600)}, 20},
		{"capped", []dns.RR{soa(86400, 86400)}, uint32(maxNegativeTTL / time.Second)},
		{"zero", []dns.RR{soa(0, 900)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Resolver{negativeTTL: 30}
			if got := r.negativeTTLOf(&dns.Msg{Ns: tt.ns}); got != tt.want {
				t.Errorf("negativeTTLOf = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestTCPFallbackBounded checks that a query still fails within the timeout
// when upstream truncates over UDP and then never answers over TCP.
func TestTCPFallbackBounded(t *testing.T) {
	pc, ln := listen(t)
	truncating := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Truncated = true
		_ = w.WriteMsg(resp)
	})}
	started := make(chan struct{})
	truncating.NotifyStartedFunc = func() { close(started) }
	go func() { _ = truncating.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = truncating.Shutdown() })

	// Accept TCP connections, read nothing, answer nothing.
	var mu sync.Mutex
	var accepted []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close()
		}
	})

	const timeout = 300 * time.Millisecond
	d := newDirect(t, Config{Upstream: pc.LocalAddr().String(), Timeout: timeout})
	start := time.Now()
	resp := d.query(t, srcSB1, "api.example.test", dns.TypeA)
	elapsed := time.Since(start)

	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
	if elapsed > timeout+time.Second {
		t.Errorf("answered after %v, want within about %v", elapsed, timeout)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) == 0 {
		t.Error("the resolver never retried over TCP")
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}
