package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseH2load(t *testing.T) {
	out, err := os.ReadFile("testdata/h2load-h2.txt")
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Open("testdata/h2load-requests.log")
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()

	res := stepResult{spec: loadSpec{proto: "h2", conns: 2}}
	if err := parseH2load(string(out), log, &res); err != nil {
		t.Fatal(err)
	}
	if res.requests != 2496 || res.ok != 2496 || res.failed != 0 {
		t.Errorf("requests/ok/failed = %d/%d/%d, want 2496/2496/0", res.requests, res.ok, res.failed)
	}
	if res.seconds < 0.31 || res.seconds > 0.311 {
		t.Errorf("seconds = %v, want 0.31081", res.seconds)
	}
	// The log holds five requests: 5453, 669, 657, ... microseconds.
	if res.p50 == 0 || res.p99 != 5453*time.Microsecond {
		t.Errorf("p50/p99 = %v/%v, want p99 5.453ms", res.p50, res.p99)
	}
}

func TestParseH2loadFallbackToHTTP1(t *testing.T) {
	out, _ := os.ReadFile("testdata/h2load-h2.txt")
	h1 := strings.Replace(string(out), "Application protocol: h2", "Application protocol: http/1.1", 1)
	res := stepResult{spec: loadSpec{proto: "h2", conns: 2}}
	if err := parseH2load(h1, strings.NewReader(""), &res); err != errNoH2 {
		t.Fatalf("err = %v, want errNoH2", err)
	}
}

func TestPercentiles(t *testing.T) {
	var ts []time.Duration
	for i := 100; i >= 1; i-- {
		ts = append(ts, time.Duration(i)*time.Millisecond)
	}
	p50, p99 := percentiles(ts)
	if p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50/p99 = %v/%v, want 50ms/99ms", p50, p99)
	}
	if p50, p99 := percentiles(nil); p50 != 0 || p99 != 0 {
		t.Errorf("empty: %v/%v", p50, p99)
	}
}

// TestReport renders the report and charts of a made-up run, so that a
// change to either is checked without root or a world.
func TestReport(t *testing.T) {
	res := &results{opts: options{duration: time.Second}, machine: machine{cpus: 2}, started: time.Now(),
		finished: time.Now()}
	res.specs = loadSpecs(false)
	for i, key := range []string{"direct", "keygate", "squid"} {
		rr := &rowResult{key: key, name: key}
		for _, spec := range res.specs {
			// The rest of the work: 1 ms a request, so that a proxy
			// costing nothing could reach 2,000 req/s on 2 cores, 0.67×
			// direct's 3,000; at the 0.45× goal (1,350 req/s) each
			// request has 1,481 µs, 481 of them left for the proxy.
			s := stepResult{spec: spec, rps: float64(1000 * (3 - i)), ok: 1000, cpu: 0.5,
				rest: 1, upstream: 0.25, p50: time.Millisecond, p99: 5 * time.Millisecond}
			if key == "squid" && spec.proto == "h2" {
				s = stepResult{spec: spec, err: errNoH2.Error()}
			}
			rr.steps = append(rr.steps, s)
		}
		res.rows = append(res.rows, rr)
	}
	res.rows = append(res.rows, &rowResult{key: "keygate-tc", name: "keygate (tc)",
		unsupported: "n/a: not supported by this build"})
	res.scale = &scaleResults{sandboxes: 10, rssBefore: 10 << 20, rssLive: 11 << 20}
	for i := range 10 {
		res.scale.create = append(res.scale.create, time.Duration(10+i)*time.Millisecond)
	}

	charts, err := writeCharts(res, filepath.Join(t.TempDir(), "bench"))
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 7 {
		t.Errorf("%d charts, want 7", len(charts))
	}
	md := res.markdown(charts)
	for _, want := range []string{
		"h1, 64 conns, keep-alive: keygate ≥ 0.45× direct | 0.67× (2000 vs 3000 req/s); " +
			"a proxy costing nothing could reach 0.67× here: client, upstream and kernel took 1000 µs/req " +
			"(upstream 250), direct 1000 (upstream 250); the goal leaves the proxy 481 µs/req, keygated took 500",
		"| keygate | 64 | 2000 | 0.67 | 1.00ms | 5.00ms | 0.50 | 2000 | 1000 | 0.67 | 0 (0) |",
		"| met |",
		"vs its HTTP/1.1: it has no HTTP/2",
		"n/a: not supported by this build",
		"102.4 KiB per sandbox",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestProfileParts reads the cost shares out of `go tool pprof -top -cum`
// lines.
func TestProfileParts(t *testing.T) {
	out := `Showing nodes accounting for 2.97s, 100% of 2.97s total
      flat  flat%   sum%        cum   cum%
     0.02s  0.67%  0.67%      0.97s 32.66%  github.com/keygate/keygate/pkg/proxy.(*Proxy).ServeHTTP
         0     0% 64.31%      0.03s  1.01%  crypto/tls.(*Conn).HandshakeContext (inline)
`
	rows := pprofRows(out)
	if len(rows) != 3 {
		t.Fatalf("rows = %q", rows)
	}
	pr := &profileResult{}
	pr.parseParts(rows)
	got := map[string]string{}
	for _, p := range pr.parts {
		got[p.fn] = p.cumPct
	}
	if got["github.com/keygate/keygate/pkg/proxy.(*Proxy).ServeHTTP"] != "32.66%" ||
		got["crypto/tls.(*Conn).HandshakeContext"] != "1.01%" || got["runtime.mallocgc"] != "not seen" {
		t.Errorf("parts = %v", got)
	}
}
