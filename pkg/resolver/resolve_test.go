package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/pin"
)

func TestAAAA(t *testing.T) {
	tests := []struct {
		name     string
		ipv6     bool
		qname    string
		wantAns  []string
		wantPins []string // addresses pinned to qname for sb1
		upstream int
		dropped  uint64 // queries counted in Stats.RebindingDropped
	}{
		{name: "off: answered empty", qname: "api.example.test"},
		{
			name: "on", ipv6: true, qname: "api.example.test",
			wantAns:  []string{"api.example.test. 2001:db8::10"},
			wantPins: []string{"2001:db8::10"},
			upstream: 1,
		},
		{
			name: "on, through a cname", ipv6: true, qname: "alias2.example.test",
			wantAns:  []string{"alias2.example.test. 2001:db8::10"},
			wantPins: []string{"2001:db8::10"},
			upstream: 1,
		},
		{
			name: "on, internal addresses dropped", ipv6: true, qname: "mixed6.example.test",
			wantAns:  []string{"mixed6.example.test. 2001:db8::20", "mixed6.example.test. 64:ff9b::c633:6414"},
			wantPins: []string{"2001:db8::20", "64:ff9b::c633:6414"},
			upstream: 1, dropped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t)
			d := newDirect(t, Config{Upstream: up.addr, IPv6: tt.ipv6})

			resp := d.query(t, srcSB1, tt.qname, dns.TypeAAAA)
			if resp.Rcode != dns.RcodeSuccess {
				t.Errorf("rcode %s, want NOERROR", dns.RcodeToString[resp.Rcode])
			}
			if got := answerAddrs(resp); !slices.Equal(got, tt.wantAns) {
				t.Errorf("answers %q, want %q", got, tt.wantAns)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Rrtype != dns.TypeAAAA {
					t.Errorf("answer %v is not AAAA", rr)
				}
			}
			if got := up.total(); got != tt.upstream {
				t.Errorf("upstream saw %d questions, want %d", got, tt.upstream)
			}
			if got := d.pins.Len(); got != len(tt.wantPins) {
				t.Errorf("%d pins, want %d", got, len(tt.wantPins))
			}
			for _, a := range tt.wantPins {
				if !d.pins.Check("sb1", netip.MustParseAddr(a), tt.qname) {
					t.Errorf("no pin (sb1, %s, %s)", a, tt.qname)
				}
			}
			if got := d.r.Stats().RebindingDropped; got != tt.dropped {
				t.Errorf("RebindingDropped = %d, want %d", got, tt.dropped)
			}
		})
	}
}

func TestTTLCappedAtPinLifetime(t *testing.T) {
	tests := []struct {
		name    string
		maxLife time.Duration // pin.Config.MaxLifetime
		want    uint32
	}{
		{"default cap", 0, uint32(pin.DefaultMaxLifetime / time.Second)},
		{"ten minutes", 10 * time.Minute, 600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t)
			clk := newClock()
			pins := pin.New(pin.Config{MaxLifetime: tt.maxLife, Now: clk.Now})
			d := newDirect(t, Config{Upstream: up.addr, Pins: pins})
			d.r.now, d.clk = clk.Now, clk

			resp := d.query(t, srcSB1, "weeks.example.test", dns.TypeA)
			if got := answerTTLs(resp); !slices.Equal(got, []uint32{tt.want}) {
				t.Errorf("TTLs %v, want [%d]", got, tt.want)
			}

			// The answer lives in the cache no longer than it was given out
			// for, and its pin lives exactly as long.
			clk.Advance(time.Duration(tt.want)*time.Second - time.Second)
			if !pins.Check("sb1", netip.MustParseAddr("198.51.100.40"), "weeks.example.test") {
				t.Error("pin expired before the answer's TTL")
			}
			d.query(t, srcSB1, "weeks.example.test", dns.TypeA)
			clk.Advance(time.Second)
			d.query(t, srcSB1, "weeks.example.test", dns.TypeA)
			if got := up.total(); got != 2 {
				t.Errorf("upstream saw %d questions, want 2: the cached answer outlived the cap", got)
			}
		})
	}
}

func TestCache(t *testing.T) {
	up := startUpstream(t)
	d := newDirect(t, Config{Upstream: up.addr})
	addr := netip.MustParseAddr("198.51.100.10")

	d.query(t, srcSB1, "api.example.test", dns.TypeA)
	d.clk.Advance(100 * time.Second)

	// Another sandbox, another spelling: served from the cache, with the
	// remaining TTL, and pinned for the asking sandbox.
	resp := d.query(t, srcSB2, "API.example.TEST", dns.TypeA)
	if got, want := answerAddrs(resp), []string{"API.example.TEST. 198.51.100.10"}; !slices.Equal(got, want) {
		t.Errorf("answers %q, want %q", got, want)
	}
	if got := answerTTLs(resp); !slices.Equal(got, []uint32{200}) {
		t.Errorf("TTLs %v, want the remaining [200]", got)
	}
	if got := up.total(); got != 1 {
		t.Errorf("upstream saw %d questions, want 1", got)
	}
	if !d.pins.Check("sb2", addr, "api.example.test") {
		t.Error("no pin for the sandbox served from the cache")
	}
	if got := d.r.Stats().CacheHit; got != 1 {
		t.Errorf("CacheHit = %d, want 1", got)
	}

	// The pin from the cache lives as long as the TTL handed out.
	d.clk.Advance(199 * time.Second)
	if !d.pins.Check("sb2", addr, "api.example.test") {
		t.Error("pin from the cache expired before its TTL")
	}
	d.clk.Advance(time.Second)
	if d.pins.Check("sb2", addr, "api.example.test") {
		t.Error("pin from the cache outlived its TTL")
	}

	// The cached answer has expired too.
	resp = d.query(t, srcSB2, "api.example.test", dns.TypeA)
	if got := answerTTLs(resp); !slices.Equal(got, []uint32{300}) {
		t.Errorf("TTLs %v after expiry, want a fresh [300]", got)
	}
	if got := up.total(); got != 2 {
		t.Errorf("upstream saw %d questions, want 2 after expiry", got)
	}
}

func TestCacheStillFilters(t *testing.T) {
	up := startUpstream(t)
	d := newDirect(t, Config{Upstream: up.addr})

	for _, src := range []string{srcSB1, srcSB2} {
		resp := d.query(t, src, "mixed.example.test", dns.TypeA)
		if got, want := answerAddrs(resp), []string{"mixed.example.test. 198.51.100.20"}; !slices.Equal(got, want) {
			t.Errorf("answers to %s %q, want %q", src, got, want)
		}
	}
	st := d.r.Stats()
	if st.CacheHit != 1 || st.RebindingDropped != 2 {
		t.Errorf("CacheHit %d RebindingDropped %d, want 1 and 2", st.CacheHit, st.RebindingDropped)
	}
	if got := d.pins.Len(); got != 2 {
		t.Errorf("%d pins, want the public address for each sandbox", got)
	}
	if recs := d.logs.records(t, "dns answer dropped"); len(recs) != 2 {
		t.Errorf("%d rebinding records, want 2", len(recs))
	}
}

func TestZeroTTLNotCached(t *testing.T) {
	up := startUpstream(t)
	d := newDirect(t, Config{Upstream: up.addr})

	for range 2 {
		resp := d.query(t, srcSB1, "zero.example.test", dns.TypeA)
		if got := answerTTLs(resp); !slices.Equal(got, []uint32{0}) {
			t.Errorf("TTLs %v, want [0]", got)
		}
	}
	if got := up.total(); got != 2 {
		t.Errorf("upstream saw %d questions, want 2", got)
	}
	// The pin still lives the floor.
	d.clk.Advance(pin.DefaultFloor - time.Second)
	if !d.pins.Check("sb1", netip.MustParseAddr("198.51.100.50"), "zero.example.test") {
		t.Error("pin of a TTL 0 answer expired before the floor")
	}
}

func TestNegativeCache(t *testing.T) {
	tests := []struct {
		name        string
		negativeTTL time.Duration // Config.NegativeTTL
		qname       string
		wantRcode   int
		wantLife    time.Duration
	}{
		{"nxdomain, default", 0, "missing.example.test", dns.RcodeNameError, DefaultNegativeTTL},
		{"nxdomain, configured", 5 * time.Second, "missing.example.test", dns.RcodeNameError, 5 * time.Second},
		{"nxdomain, soa minimum", 0, "withsoa.example.test", dns.RcodeNameError, 10 * time.Second},
		{"no data, default", 0, "nodata.example.test", dns.RcodeSuccess, DefaultNegativeTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t)
			d := newDirect(t, Config{Upstream: up.addr, NegativeTTL: tt.negativeTTL})

			ask := func(wantUpstream int) {
				t.Helper()
				resp := d.query(t, srcSB1, tt.qname, dns.TypeA)
				if resp.Rcode != tt.wantRcode || len(resp.Answer) != 0 {
					t.Errorf("reply %s with %d answers, want %s and none",
						dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tt.wantRcode])
				}
				if got := up.total(); got != wantUpstream {
					t.Errorf("upstream saw %d questions, want %d", got, wantUpstream)
				}
			}
			ask(1)
			d.clk.Advance(tt.wantLife - time.Second)
			ask(1)
			d.clk.Advance(time.Second)
			ask(2)
		})
	}
}

func TestNegativeFloodSparesPositive(t *testing.T) {
	up := startUpstream(t)
	d := newDirect(t, Config{Upstream: up.addr, CacheSize: 8})

	d.query(t, srcSB1, "api.example.test", dns.TypeA)
	for i := range 50 {
		d.query(t, srcSB1, fmt.Sprintf("missing%d.example.test", i), dns.TypeA)
	}
	d.query(t, srcSB1, "api.example.test", dns.TypeA)
	if got := up.count("api.example.test", dns.TypeA); got != 1 {
		t.Errorf("upstream saw %d questions for api.example.test, want 1", got)
	}
	if got := d.r.negative.order.Len(); got > 8/4+1 {
		t.Errorf("negative cache holds %d answers, above its bound", got)
	}
}

func TestCollapse(t *testing.T) {
	const n = 8
	gate := make(chan struct{})
	var release sync.Once
	up := startGatedUpstream(t, gate)
	// Cleanups run last first: open the gate before the upstream stops.
	t.Cleanup(func() { release.Do(func() { close(gate) }) })
	d := newDirect(t, Config{Upstream: up.addr, Timeout: 10 * time.Second})

	replies := make([]*dns.Msg, n)
	var wg sync.WaitGroup
	ask := func(i int) {
		wg.Go(func() {
			src := []string{srcSB1, srcSB2}[i%2]
			req := new(dns.Msg)
			req.SetQuestion("slow.example.test.", dns.TypeA)
			w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(src), Port: 5353}}
			d.r.ServeDNS(w, req)
			replies[i] = w.reply
		})
	}

	// The first query reaches upstream and is held there; the others join it.
	ask(0)
	waitFor(t, func() bool { return up.count("slow.example.test", dns.TypeA) == 1 })
	for i := 1; i < n; i++ {
		ask(i)
	}
	key := cacheKey{name: "slow.example.test", qtype: dns.TypeA}
	waitFor(t, func() bool { return d.r.flights.waiters(key) == n-1 })
	release.Do(func() { close(gate) })
	wg.Wait()

	for i, resp := range replies {
		if got, want := answerAddrs(resp), []string{"slow.example.test. 198.51.100.70"}; !slices.Equal(got, want) {
			t.Errorf("reply %d answers %q, want %q", i, got, want)
		}
	}
	if got := up.total(); got != 1 {
		t.Errorf("upstream saw %d questions, want 1", got)
	}
	if got := d.r.Stats().Collapsed; got != n-1 {
		t.Errorf("Collapsed = %d, want %d", got, n-1)
	}
	for _, sb := range []string{"sb1", "sb2"} {
		if !d.pins.Check(sb, netip.MustParseAddr("198.51.100.70"), "slow.example.test") {
			t.Errorf("no pin for %s, which shared another's exchange", sb)
		}
	}
}

// waiters returns how many calls wait for the fetch of k in flight.
func (c *collapser) waiters(k cacheKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.flights[k]; ok {
		return f.waiting
	}
	return 0
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
