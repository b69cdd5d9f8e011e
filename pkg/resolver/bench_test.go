package resolver

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/pin"
)

// TestConcurrentQueries runs queries of every kind from several goroutines
// over UDP and TCP, for the race detector, and checks that each query was
// counted under exactly one outcome.
func TestConcurrentQueries(t *testing.T) {
	up := startUpstream(t)
	h := startResolver(t, Config{Upstream: up.addr, IPv6: true, CacheSize: 16})

	names := []struct {
		name  string
		qtype uint16
		want  int // rcode
	}{
		{"api.example.test", dns.TypeA, dns.RcodeSuccess},
		{"api.example.test", dns.TypeAAAA, dns.RcodeSuccess},
		{"alias2.example.test", dns.TypeA, dns.RcodeSuccess},
		{"mixed.example.test", dns.TypeA, dns.RcodeSuccess},
		{"missing.example.test", dns.TypeA, dns.RcodeNameError},
		{"evil.attacker.test", dns.TypeTXT, dns.RcodeNameError},
		{"servfail.example.test", dns.TypeA, dns.RcodeServerFailure},
	}
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			network := []string{"udp", "tcp"}[w%2]
			c := &dns.Client{Net: network}
			for i := range perWorker {
				q := names[(w+i)%len(names)]
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(q.name), q.qtype)
				resp, _, err := c.Exchange(m, h.addr)
				if err != nil {
					t.Errorf("%s over %s: %v", q.name, network, err)
					return
				}
				if resp.Rcode != q.want {
					t.Errorf("%s over %s: rcode %s, want %s", q.name, network,
						dns.RcodeToString[resp.Rcode], dns.RcodeToString[q.want])
				}
			}
		})
	}
	wg.Wait()

	st := h.r.Stats()
	sum := st.Answered + st.NXDomainDenied + st.Refused + st.ServFail + st.Malformed
	if sum != workers*perWorker {
		t.Errorf("outcomes sum to %d, want %d queries: %+v", sum, workers*perWorker, st)
	}
}

// BenchmarkResolveCached measures queries answered from the cache through
// ServeDNS: policy check, cache lookup, filtering, pinning and the reply.
func BenchmarkResolveCached(b *testing.B) {
	up := startUpstream(b)
	r := benchResolver(b, up.addr)
	w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
	req := new(dns.Msg)
	req.SetQuestion("api.example.test.", dns.TypeA)
	r.ServeDNS(w, req) // fills the cache

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
		for pb.Next() {
			r.ServeDNS(w, req)
			if len(w.reply.Answer) != 1 {
				b.Errorf("answers %v, want one", w.reply.Answer)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	if hits := r.Stats().CacheHit; hits < uint64(b.N) {
		b.Errorf("%d cache hits for %d queries", hits, b.N)
	}
}

// BenchmarkResolveUpstream measures queries that miss the cache and are
// resolved by the in-process upstream over loopback UDP.
func BenchmarkResolveUpstream(b *testing.B) {
	up := startUpstream(b)
	r := benchResolver(b, up.addr)
	var seq atomic.Uint64

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &recorder{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
		req := new(dns.Msg)
		for pb.Next() {
			req.SetQuestion(fmt.Sprintf("bench-%d.example.test.", seq.Add(1)), dns.TypeA)
			r.ServeDNS(w, req)
			if len(w.reply.Answer) != 1 {
				b.Errorf("answers %v, want one", w.reply.Answer)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// benchResolver returns a Resolver for sb1 at 127.0.0.1, with caches large
// enough that benchmarks never evict.
func benchResolver(b *testing.B, upstream string) *Resolver {
	b.Helper()
	r, err := New(Config{
		Upstream:  upstream,
		Sandboxes: loopbackSandbox(defaultPolicy),
		Pins:      pin.New(pin.Config{MaxEntries: 1 << 22}),
		CacheSize: 1 << 22,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(b, r) })
	return r
}
