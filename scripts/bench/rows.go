package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// row is one way for the client to reach the upstream: straight, through
// keygate, or through a peer proxy. Every row sees the same upstream and
// the same load.
type row struct {
	key  string // short name for --rows and file names
	name string // as shown in the tables

	// unsupported, if not empty, says why the row cannot run in this build
	// or on this machine; the tables show it instead of figures.
	unsupported string

	// connectTo is the address the client dials (h2load --connect-to);
	// empty means resolving the URL's host, as inside a sandbox.
	connectTo string
	// auth is the Authorization value the client sends; "" means the
	// sandbox's placeholder from $BENCH_TOKEN.
	auth string
	// capture is keygate's capture mode for the sandboxed client, or "".
	capture string

	// pid returns the process id of the proxy whose CPU is counted; nil
	// when there is no proxy.
	pid func() int
	// start and stop bring up and tear down the row's proxy; nil for none.
	start func(ctx context.Context) error
	stop  func() error
}

// rows returns every row in table order.
func (e *env) rows() []*row {
	bw := e.world
	direct := &row{key: "direct", name: "direct", connectTo: bw.addr.String(), auth: "Bearer " + bw.secret}
	kg := e.keygateRow("keygate", "keygate (cgroup)", "cgroup")
	kgtc := e.keygateRow("keygate-tc", "keygate (tc)", "tc")
	return []*row{direct, kg, kgtc, e.mitmproxyRow(), e.squidRow(), e.goproxyRow(), e.relayRow()}
}

// keygateRow is the client inside a keygate sandbox bound to the bench
// vault, sending its placeholder; keygated terminates TLS and injects.
func (e *env) keygateRow(key, name, capture string) *row {
	r := &row{key: key, name: name, capture: capture}
	r.pid = e.agent.pid
	r.start = func(ctx context.Context) error {
		// A sandbox that cannot start with this capture mode means the
		// build does not support it: the row is shown as not applicable.
		out, err := e.agent.kg(ctx, "", "run", "--vault", benchVault, "--capture", capture, "--", "true")
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.unsupported = "n/a: not supported by this build"
			progress("%s: %v %s", name, err, strings.TrimSpace(out))
		}
		return nil
	}
	return r
}

// sandboxLog is where a sandboxed client writes its per-request log: the
// sandbox's /tmp is its own, and its /proc does not show it /proc/self.
const sandboxLog = "/tmp/kgbench-requests.log"

// logPath returns where row r's load client writes its per-request log.
func (e *env) logPath(r *row) string {
	if r.capture != "" {
		return sandboxLog
	}
	return e.path("requests.log")
}

// clientCommand returns the load client argv as row r runs it: on the host
// with r's Authorization value, or inside a sandbox, where the shell adds
// the placeholder from the sandbox's environment. Either way the shell
// then copies the per-request log (if the client wrote one) to stderr.
func (e *env) clientCommand(ctx context.Context, r *row, argv []string) *exec.Cmd {
	auth := ""
	if r.capture != "" {
		auth = fmt.Sprintf(` -H "authorization: Bearer $%s"`, benchEnvVar)
	}
	script := fmt.Sprintf(`"$0" "$@"%s; rc=$?; if [ -f %[2]s ]; then cat %[2]s >&2; rm -f %[2]s; fi; exit $rc`,
		auth, e.logPath(r))
	if r.capture == "" {
		args := append([]string{"-c", script}, argv...)
		return exec.CommandContext(ctx, "sh", append(args, "-H", "authorization: "+r.auth)...)
	}
	args := append([]string{"run", "--vault", benchVault, "--capture", r.capture, "--", "sh", "-c", script}, argv...)
	return e.agent.command(ctx, args...)
}

// rowResult is a row's figures for every load step.
type rowResult struct {
	key, name   string
	unsupported string // set instead of steps when the row could not run
	overhead    startCost
	steps       []stepResult
	profile     *profileResult // keygated's CPU profile, for the keygate row; or nil
}

// step returns the result for spec, if the row ran it.
func (rr *rowResult) step(spec loadSpec) (stepResult, bool) {
	for _, s := range rr.steps {
		if s.spec == spec {
			return s, true
		}
	}
	return stepResult{}, false
}

// noHTTP2 reports whether every HTTP/2 step of rr found no HTTP/2.
func (rr *rowResult) noHTTP2() bool {
	n := 0
	for _, s := range rr.steps {
		if s.spec.proto == "h2" {
			if s.err != errNoH2.Error() {
				return false
			}
			n++
		}
	}
	return n > 0
}

// backgroundWindow is how long the machine's CPU is watched with no load
// before the rows start.
const backgroundWindow = 2 * time.Second

// runLoadRows starts every selected row, then runs each load step for
// every row back to back, so that a change in the machine's other load
// during the run falls on all rows of a step alike: the ratios within a
// step are what the targets judge.
func runLoadRows(ctx context.Context, e *env, res *results) error {
	specs := loadSpecs(e.opts.quick)
	res.specs = specs
	type live struct {
		r  *row
		rr *rowResult
	}
	var ready []live
	var all []*row
	progress("measuring the machine's background load (%s idle)", backgroundWindow)
	e.measureBackground(ctx, backgroundWindow)
	res.background = e.background
	defer func() {
		for _, r := range all {
			if r.stop != nil {
				r.stop()
			}
		}
	}()
	for _, r := range e.rows() {
		if !e.opts.wantRow(r.key) {
			continue
		}
		all = append(all, r)
		rr, ok, err := e.startRow(ctx, r)
		if err != nil {
			return err
		}
		res.rows = append(res.rows, rr)
		if ok {
			ready = append(ready, live{r, rr})
		}
	}

	for _, spec := range specs {
		progress("step: %s", spec)
		for _, l := range ready {
			s := e.runStep(ctx, l.r, spec, e.opts.duration, l.rr.overhead)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			progress("  %-24s %s", l.r.name, s.summary())
			l.rr.steps = append(l.rr.steps, s)
		}
	}
	for _, l := range ready {
		if l.r.key == "keygate" && e.agent.metrics != "" {
			progress("profiling keygated under %s", profileSpec)
			l.rr.profile = e.profileAgent(ctx, l.r)
		}
	}
	return ctx.Err()
}

// startRow starts r's proxy and warms it up. It reports whether the row
// can run; only a cancelled ctx is an error, and a row that cannot start
// is reported as such in the tables. The caller stops r.
func (e *env) startRow(ctx context.Context, r *row) (*rowResult, bool, error) {
	rr := &rowResult{key: r.key, name: r.name}
	progress("starting %s", r.name)
	if r.start != nil {
		err := r.start(ctx)
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if err != nil {
			rr.unsupported = "did not start: " + firstLine(err.Error())
			progress("%s: %v", r.name, err)
			return rr, false, nil
		}
	}
	if r.unsupported != "" {
		rr.unsupported = r.unsupported
		progress("%s: %s", r.name, r.unsupported)
		return rr, false, nil
	}
	if r.capture != "" {
		rr.overhead = e.sandboxOverhead(ctx, r)
	}

	// Warm-up, not recorded: leaf certificates, upstream pools, JITs.
	for _, proto := range []string{"h1", "h2"} {
		e.runStep(ctx, r, loadSpec{proto: proto, conns: 16}, 500*time.Millisecond, rr.overhead)
	}
	return rr, true, ctx.Err()
}

// startCost is the CPU seconds starting and ending one client sandbox
// costs keygated (proxy) and the machine as a whole (machine, keygated's
// share included).
type startCost struct{ proxy, machine float64 }

// sandboxOverhead returns what starting and ending one sandbox that runs
// nothing costs, averaged over three: taken off each keygate step, whose
// client runs in a sandbox of its own.
func (e *env) sandboxOverhead(ctx context.Context, r *row) startCost {
	const n = 3
	cpu0, err := cpuSeconds(e.agent.pid())
	if err != nil {
		return startCost{}
	}
	m0 := e.sampleMachine()
	for range n {
		if _, err := e.agent.kg(ctx, "", "run", "--vault", benchVault, "--capture", r.capture, "--", "true"); err != nil {
			return startCost{}
		}
	}
	m1 := e.sampleMachine()
	cpu1, err := cpuSeconds(e.agent.pid())
	if err != nil {
		return startCost{}
	}
	c := startCost{proxy: (cpu1 - cpu0) / n}
	if m0.ok && m1.ok {
		c.machine = max(e.busyBetween(m0, m1)/n, c.proxy)
	}
	return c
}

// summary is a one-line account of s for the progress log.
func (s stepResult) summary() string {
	if s.err != "" {
		return "error: " + s.err
	}
	cpu := "-"
	if s.cpu >= 0 {
		cpu = fmt.Sprintf("%.2fs", s.cpu)
	}
	line := fmt.Sprintf("%8.0f req/s  p50 %-8s p99 %-8s proxy CPU %-6s failed %d", s.rps,
		fmtDur(s.p50), fmtDur(s.p99), cpu, s.failed)
	if s.lastErr != "" {
		line += " (last error: " + s.lastErr + ")"
	}
	return line
}
