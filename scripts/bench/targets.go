package main

import (
	"fmt"
	"time"
)

// target is one goal from the benchmark issue, judged from this run.
type target struct {
	what     string
	measured string
	met      bool
	short    string // by how much a missed target was missed
	na       string // why it could not be judged
}

// Goals. Throughput ratios are taken within one run at 64 keep-alive
// connections.
const (
	goalDirectH1     = 0.45
	goalDirectH2     = 0.55
	goalGoProxy      = 1.0
	goalSquid        = 1.5
	goalMitmproxy    = 10.0
	goalNewConn      = 0.8 // new connection per request, vs direct
	goalAddedP50     = 300 * time.Microsecond
	goalCreateP50    = 50 * time.Millisecond
	goalCreateP99    = 200 * time.Millisecond
	goalSandboxBytes = 1 << 20
	goalIdleConnB    = 64 << 10
)

// targets judges every goal this run has the figures for.
func (r *results) targets() []target {
	var ts []target
	kg := r.row("keygate")
	for _, proto := range []string{"h1", "h2"} {
		spec := loadSpec{proto: proto, conns: 64}
		goalDirect := map[string]float64{"h1": goalDirectH1, "h2": goalDirectH2}[proto]
		peers := []struct {
			key  string
			goal float64
		}{{"direct", goalDirect}, {"goproxy", goalGoProxy}, {"squid", goalSquid}, {"mitmproxy", goalMitmproxy}}
		for _, peer := range peers {
			ts = append(ts, r.ratioTarget(kg, r.row(peer.key), spec, peer.goal))
		}
	}
	direct := r.row("direct")
	for _, proto := range []string{"h1", "h2"} {
		ts = append(ts, r.ratioTarget(kg, direct, loadSpec{proto: proto, conns: 64, newConn: true}, goalNewConn))
	}
	for _, proto := range []string{"h1", "h2"} {
		ts = append(ts, addedLatencyTarget(kg, direct, loadSpec{proto: proto, conns: 1}))
	}
	if s := r.scale; s != nil {
		ts = append(ts, s.targets()...)
	}
	return ts
}

// addedLatencyTarget judges the p50 latency keygate adds over direct at
// spec.
func addedLatencyTarget(kg, direct *rowResult, spec loadSpec) target {
	t := target{what: fmt.Sprintf("%s: keygate adds ≤ %s to direct's p50", spec, fmtDur(goalAddedP50))}
	if kg == nil || direct == nil {
		t.na = "row not run"
		return t
	}
	a, okA := kg.step(spec)
	b, okB := direct.step(spec)
	if !okA || !okB || a.err != "" || b.err != "" || a.p50 == 0 || b.p50 == 0 {
		t.na = "no figures"
		return t
	}
	added := a.p50 - b.p50
	t.measured = fmt.Sprintf("%s (%s vs %s)", fmtDur(added), fmtDur(a.p50), fmtDur(b.p50))
	t.met = added <= goalAddedP50
	if !t.met {
		t.short = fmt.Sprintf("%s over", fmtDur(added-goalAddedP50))
	}
	return t
}

// ratioTarget judges keygate's req/s at spec against other's times goal.
func (r *results) ratioTarget(kg, other *rowResult, spec loadSpec, goal float64) target {
	t := target{what: fmt.Sprintf("%s: keygate ≥ %.2g× %s", spec, goal, rowName(other))}
	if kg == nil || other == nil {
		t.na = "row not run"
		return t
	}
	a, okA := kg.step(spec)
	b, okB := other.step(spec)
	// A peer without HTTP/2 is compared with what it does serve.
	against := ""
	if okB && b.err == errNoH2.Error() {
		b, okB = other.step(loadSpec{proto: "h1", conns: spec.conns, newConn: spec.newConn})
		against = ", vs its HTTP/1.1: it has no HTTP/2"
	}
	if !okA || !okB || a.err != "" || b.err != "" || b.rps == 0 {
		t.na = "no figures"
		return t
	}
	ratio := a.rps / b.rps
	t.measured = fmt.Sprintf("%.2f× (%.0f vs %.0f req/s%s)", ratio, a.rps, b.rps, against)
	// Against direct, say how far any proxy could get on this machine: the
	// client, upstream and kernel work of keygate's row alone, with the
	// proxy costing nothing.
	if other.key == "direct" {
		t.measured += r.directBound(a, b, goal)
	}
	t.met = ratio >= goal
	if !t.met {
		t.short = fmt.Sprintf("%.0f%% short (%.2f× below the goal)", 100*(1-ratio/goal), goal-ratio)
	}
	return t
}

// directBound explains keygate's step a against direct's step b on this
// machine: what a proxy costing nothing could reach, and how much CPU per
// request the goal leaves a proxy, given the rest of the work a's row took
// (client, upstream, kernel). Empty without the figures.
func (r *results) directBound(a, b stepResult, goal float64) string {
	cores := r.machine.cpus
	bound := a.bound(cores)
	if bound == 0 || b.rps == 0 {
		return ""
	}
	rest := a.restPerOK() * 1e6
	out := fmt.Sprintf("; a proxy costing nothing could reach %.2f× here: client, upstream and kernel took %.0f µs/req%s, "+
		"direct %.0f%s", bound/b.rps, rest, upstreamShare(a), b.restPerOK()*1e6, upstreamShare(b))
	// At the goal's req/s the cores give each request cores/rps seconds,
	// of which the rest takes its share.
	budget := float64(cores)/(goal*b.rps)*1e6 - rest
	out += fmt.Sprintf("; the goal leaves the proxy %.0f µs/req", max(budget, 0))
	if a.cpu > 0 && a.ok > 0 {
		out += fmt.Sprintf(", keygated took %.0f", 1e6*a.cpu/float64(a.ok))
	}
	return out
}

// upstreamShare names the upstream's part of s's rest per request, or ""
// when it was not measured.
func upstreamShare(s stepResult) string {
	if s.upstream < 0 || s.ok == 0 {
		return ""
	}
	return fmt.Sprintf(" (upstream %.0f)", 1e6*s.upstream/float64(s.ok))
}

func rowName(rr *rowResult) string {
	if rr == nil {
		return "(not run)"
	}
	return rr.name
}

// targets judges the sandbox lifecycle and memory goals.
func (s *scaleResults) targets() []target {
	window := s.createWindow()
	live := fmt.Sprintf("creates %d–%d (%d–%d live)", len(s.create)-len(window)+1, len(s.create),
		len(s.create)-len(window), len(s.create)-1)
	p50, p99 := percentiles(append([]time.Duration{}, window...))
	ts := []target{
		durTarget("sandbox create p50 ≤ 50 ms, "+live, p50, goalCreateP50),
		durTarget("sandbox create p99 ≤ 200 ms, "+live, p99, goalCreateP99),
	}
	per, ok := s.perSandbox()
	mem := bytesTarget(fmt.Sprintf("agent memory ≤ 1 MiB per idle sandbox (%d live)", len(s.create)),
		per, ok, goalSandboxBytes)
	perConn, ok := s.perIdleConn()
	idle := bytesTarget(fmt.Sprintf("keygated memory ≤ %s per idle client connection (%d open)",
		fmtBytes(goalIdleConnB), s.idleOpen), perConn, ok, goalIdleConnB)
	return append(ts, mem, idle)
}

// bytesTarget judges a memory figure against its goal; ok false means
// there was no figure.
func bytesTarget(what string, got float64, ok bool, goal float64) target {
	t := target{what: what}
	if !ok {
		t.na = "no figures"
		return t
	}
	t.measured = fmtBytes(got)
	t.met = got <= goal
	if !t.met {
		t.short = fmt.Sprintf("%.2f× the goal", got/goal)
	}
	return t
}

// perIdleConn returns keygated's RSS growth per idle connection held open.
func (s *scaleResults) perIdleConn() (float64, bool) {
	if s.idleOpen == 0 || s.idleRSSAfter == 0 {
		return 0, false
	}
	return float64(s.idleRSSAfter-s.idleRSSBefore) / float64(s.idleOpen), true
}

func durTarget(what string, got, goal time.Duration) target {
	t := target{what: what}
	if got == 0 {
		t.na = "no figures"
		return t
	}
	t.measured = fmtDur(got)
	t.met = got <= goal
	if !t.met {
		t.short = fmt.Sprintf("%s over (%.2f× the goal)", fmtDur(got-goal), float64(got)/float64(goal))
	}
	return t
}

// createWindow returns the last fifth of the create times (the last 100
// of 500): those made with the most sandboxes already live, which is what
// "create time with N live" means.
func (s *scaleResults) createWindow() []time.Duration {
	return s.create[len(s.create)-max(len(s.create)/5, min(len(s.create), 1)):]
}

// perSandbox returns keygated's RSS growth per live sandbox.
func (s *scaleResults) perSandbox() (float64, bool) {
	if len(s.create) == 0 || s.rssBefore == 0 || s.rssLive == 0 {
		return 0, false
	}
	return float64(s.rssLive-s.rssBefore) / float64(len(s.create)), true
}

func (r *results) targetSection(p printer) {
	p("## Targets\n\n")
	p("| target | measured | verdict |\n|---|---|---|\n")
	for _, t := range r.targets() {
		verdict := "met"
		switch {
		case t.na != "":
			verdict = "n/a: " + t.na
		case !t.met:
			verdict = "**missed**: " + t.short
		}
		p("| %s | %s | %s |\n", t.what, t.measured, verdict)
	}
	p("\n")
}
