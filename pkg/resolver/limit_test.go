package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestLimiter(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLimiter(2)
	a := limitKey{kindDenial, "sbA"}

	type step struct {
		at             time.Duration
		key            limitKey
		wantOK         bool
		wantSuppressed int
	}
	steps := []step{
		{0, a, true, 0}, // a burst of the rate goes through
		{0, a, true, 0},
		{0, a, false, 0},
		{0, a, false, 0},
		{0, limitKey{kindDenial, "sbB"}, true, 0},  // other sandboxes have their own bucket
		{0, limitKey{kindFailure, "sbA"}, true, 0}, // and so do other kinds
		{250 * time.Millisecond, a, false, 0},      // half a token
		{500 * time.Millisecond, a, true, 3},       // one token: reports the three refused
		{500 * time.Millisecond, a, false, 0},
		{10 * time.Second, a, true, 1}, // refilled, but only to the burst
		{10 * time.Second, a, true, 0},
		{10 * time.Second, a, false, 0},
	}
	for i, s := range steps {
		ok, suppressed := l.allow(s.key, start.Add(s.at))
		if ok != s.wantOK || suppressed != s.wantSuppressed {
			t.Errorf("step %d (%+v): allow = %v, %d; want %v, %d",
				i, s, ok, suppressed, s.wantOK, s.wantSuppressed)
		}
	}
}

func TestLimiterPrunes(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newLimiter(1)
	for i := range 10 * minPrune {
		now = now.Add(time.Second) // every earlier bucket has refilled
		l.allow(limitKey{kindDenial, fmt.Sprintf("sb%d", i)}, now)
	}
	if n := len(l.buckets); n > minPrune {
		t.Errorf("%d buckets kept, want at most %d", n, minPrune)
	}

	// A bucket with suppressed records survives pruning until it is idle.
	l = newLimiter(1)
	busy := limitKey{kindDenial, "busy"}
	l.allow(busy, now)
	l.allow(busy, now) // suppressed
	for i := range minPrune {
		l.allow(limitKey{kindDenial, fmt.Sprintf("sb%d", i)}, now.Add(time.Second))
	}
	if _, ok := l.buckets[busy]; !ok {
		t.Error("a bucket holding a suppressed count was pruned before it was idle")
	}
}

func TestDenialRateLimit(t *testing.T) {
	var denials []Denial
	d := newDirect(t, Config{
		Upstream:   "127.0.0.1:1",
		RecordRate: 2,
		OnDeny:     func(d Denial) { denials = append(denials, d) },
	})

	for i := range 10 {
		d.query(t, srcSB1, fmt.Sprintf("x%d.attacker.test", i), dns.TypeA)
	}
	d.query(t, srcSB2, "other.attacker.test", dns.TypeA) // another sandbox is not starved
	if got := len(denials); got != 3 {
		t.Fatalf("%d OnDeny calls, want 2 for sb1 and 1 for sb2", got)
	}
	if got := len(d.logs.records(t, "dns query denied")); got != 3 {
		t.Errorf("%d denial records, want 3", got)
	}

	d.clk.Advance(time.Second)
	d.query(t, srcSB1, "late.attacker.test", dns.TypeA)
	last := denials[len(denials)-1]
	if last.Name != "late.attacker.test" || last.Suppressed != 8 {
		t.Errorf("next denial %+v, want late.attacker.test with 8 suppressed", last)
	}
	recs := d.logs.records(t, "dns query denied")
	if got := recs[len(recs)-1]["suppressed"]; got != 8.0 {
		t.Errorf("next denial record has suppressed=%v, want 8", got)
	}
	if got := d.r.Stats().NXDomainDenied; got != 12 {
		t.Errorf("NXDomainDenied = %d, want every query counted, 12", got)
	}
}

func TestUpstreamFailureRateLimit(t *testing.T) {
	d := newDirect(t, Config{Upstream: closedPort(t), RecordRate: 1, Timeout: time.Second})
	for range 5 {
		if resp := d.query(t, srcSB1, "api.example.test", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
		}
	}
	if got := len(d.logs.records(t, "dns upstream failed")); got != 1 {
		t.Errorf("%d failure records, want 1", got)
	}
	if got := d.r.Stats().ServFail; got != 5 {
		t.Errorf("ServFail = %d, want 5", got)
	}
}
