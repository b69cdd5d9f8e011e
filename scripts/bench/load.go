package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// loadSpec is one load step: protocol, concurrent connections, and whether
// each connection carries many requests (keep-alive) or one.
type loadSpec struct {
	proto   string // "h1" or "h2"
	conns   int
	newConn bool
}

func (s loadSpec) mode() string {
	if s.newConn {
		return "new connection per request"
	}
	return "keep-alive"
}

func (s loadSpec) String() string { return fmt.Sprintf("%s, %d conns, %s", s.proto, s.conns, s.mode()) }

// stepGrace is how long a load client may run past its step's length
// (sandbox start and end included) before it is ended.
const stepGrace = 20 * time.Second

// loadSpecs returns the steps every row runs, in order.
func loadSpecs(quick bool) []loadSpec {
	conns := pick(quick, []int{1, 64}, []int{1, 16, 64})
	var out []loadSpec
	for _, newConn := range []bool{false, true} {
		for _, proto := range []string{"h1", "h2"} {
			for _, c := range conns {
				out = append(out, loadSpec{proto: proto, conns: c, newConn: newConn})
			}
		}
	}
	return out
}

// stepResult is what one row achieved under one load step.
type stepResult struct {
	spec     loadSpec
	seconds  float64 // length of the measured phase
	requests int     // completed requests, whatever their status
	ok       int     // 2xx answers
	failed   int     // everything else: non-2xx answers and errors
	status4  int     // 4xx answers among failed (401: nothing injected)
	rps      float64 // completed 2xx requests per second
	p50, p99 time.Duration
	cpu      float64 // proxy CPU seconds over the step; -1 without a proxy
	// rest is the machine's CPU seconds over the step not spent in the
	// proxy: the client, the upstream and the kernel work charged to
	// neither. upstream is this process's share of it: the upstream server
	// and the test world's DNS. Both are -1 when not measured.
	rest, upstream float64
	err            string // why the step produced no figures
	lastErr        string // the last client error, when some requests failed
}

// restPerOK returns rest CPU seconds per 2xx answer, or 0 when not measured.
func (r stepResult) restPerOK() float64 {
	if r.rest <= 0 || r.ok == 0 {
		return 0
	}
	return r.rest / float64(r.ok)
}

// bound returns the req/s the step could reach at most on cores CPUs if the
// proxy cost nothing: every core busy with the rest of the work alone. It
// is an upper bound for any proxy in this row's place, or 0 when not
// measured.
func (r stepResult) bound(cores int) float64 {
	per := r.restPerOK()
	if per == 0 || cores == 0 {
		return 0
	}
	return float64(cores) / per
}

// perCPU returns requests per proxy CPU-second, or 0 when not measured.
func (r stepResult) perCPU() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.ok) / r.cpu
}

// url is what every client asks for: the upstream's name, so that SNI and
// Host are the same in every row.
func (e *env) url() string {
	return fmt.Sprintf("https://%s:%d/v1/bench", e.world.host, upstreamPort)
}

// clientArgv returns the load client for spec: h2load for keep-alive
// steps; kgbench newconn, which opens a fresh TLS connection for every
// request, for the others (h2load reuses its connections).
func (e *env) clientArgv(r *row, spec loadSpec, d time.Duration) []string {
	// h2load takes whole units only: "500ms", not "0.5".
	dur := strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	if spec.newConn {
		argv := []string{e.self, "newconn", "--proto", spec.proto, "-c", strconv.Itoa(spec.conns),
			"-d", d.String(), "--url", e.url()}
		if r.connectTo != "" {
			argv = append(argv, "--connect-to", r.connectTo)
		}
		return argv
	}
	// The per-request log goes to a file that clientCommand copies to
	// stderr; the summary goes to stdout. -m 1: one request in flight per connection, for
	// HTTP/2 too, so that both protocols see the same concurrency.
	argv := []string{"h2load", "-c", strconv.Itoa(spec.conns), "-t", "1", "-m", "1", "-D", dur,
		"--log-file", e.logPath(r), e.url()}
	if spec.proto == "h1" {
		argv = append(argv, "--h1")
	}
	if r.connectTo != "" {
		argv = append(argv, "--connect-to", r.connectTo)
	}
	return argv
}

// runStep runs one load step for row r and measures the proxy's and the
// machine's CPU over it; start is what starting and ending the client's
// sandbox costs, taken off.
func (e *env) runStep(ctx context.Context, r *row, spec loadSpec, d time.Duration, start startCost) stepResult {
	res := stepResult{spec: spec, cpu: -1, rest: -1, upstream: -1}
	// A client stuck on connections that never complete is ended, so that
	// one broken row cannot stall the run.
	stepCtx, cancel := context.WithTimeout(ctx, d+stepGrace)
	defer cancel()
	argv := e.clientArgv(r, spec, d)
	cmd := e.clientCommand(stepCtx, r, argv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	logf("%s: %s: %s", r.name, spec, strings.Join(cmd.Args, " "))

	cpu0 := e.proxyCPU(r)
	m0 := e.sampleMachine()
	err := cmd.Run()
	m1 := e.sampleMachine()
	if cpu1 := e.proxyCPU(r); cpu0 >= 0 && cpu1 >= 0 {
		res.cpu = max(cpu1-cpu0-start.proxy, 0)
	}
	if m0.ok && m1.ok {
		busy := e.busyBetween(m0, m1) - start.machine
		res.rest = max(busy-max(res.cpu, 0), 0)
		res.upstream = max(m1.own-m0.own, 0)
	}
	if stepCtx.Err() != nil && ctx.Err() == nil {
		res.err = fmt.Sprintf("client still running %v after the step's end: ended", stepGrace)
		return res
	}
	if err != nil {
		res.err = fmt.Sprintf("client: %v: %s", err, lastLines(stderr.String()+stdout.String(), 3))
		return res
	}
	if spec.newConn {
		err = parseNewConn(stdout.Bytes(), &res)
	} else {
		err = parseH2load(stdout.String(), &stderr, &res)
	}
	if err != nil {
		res.err = err.Error()
	}
	return res
}

// machineSample is the machine's busy CPU time and this process's at one
// moment.
type machineSample struct {
	at        time.Time
	busy, own float64
	ok        bool
}

// busyBetween returns the machine's busy CPU seconds from m0 to m1, less
// the background it keeps with no load.
func (e *env) busyBetween(m0, m1 machineSample) float64 {
	return m1.busy - m0.busy - e.background*m1.at.Sub(m0.at).Seconds()
}

func (e *env) sampleMachine() machineSample {
	busy, err1 := machineBusy()
	own, err2 := cpuSeconds(os.Getpid())
	return machineSample{at: time.Now(), busy: busy, own: own, ok: err1 == nil && err2 == nil}
}

// measureBackground sets e.background to the CPUs the machine keeps busy
// over d while no load runs (every row idle, other work on the host), so
// that steps can take it off their machine CPU.
func (e *env) measureBackground(ctx context.Context, d time.Duration) {
	m0 := e.sampleMachine()
	select {
	case <-ctx.Done():
		return
	case <-time.After(d):
	}
	m1 := e.sampleMachine()
	if m0.ok && m1.ok {
		e.background = max((m1.busy-m0.busy)/m1.at.Sub(m0.at).Seconds(), 0)
	}
}

// proxyCPU returns row r's proxy CPU seconds so far, or -1 without one.
func (e *env) proxyCPU(r *row) float64 {
	if r.pid == nil {
		return -1
	}
	s, err := cpuSeconds(r.pid())
	if err != nil {
		return -1
	}
	return s
}

var (
	h2loadFinished = regexp.MustCompile(`finished in ([0-9.]+)(m?s), ([0-9.]+) req/s`)
	h2loadRequests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, ` +
		`(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2loadStatus = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
	h2loadProto  = regexp.MustCompile(`Application protocol: (\S+)`)
)

// parseH2load reads h2load's summary from out and its per-request log
// (start, status, microseconds) from log.
func parseH2load(out string, log io.Reader, res *stepResult) error {
	fin := h2loadFinished.FindStringSubmatch(out)
	req := h2loadRequests.FindStringSubmatch(out)
	st := h2loadStatus.FindStringSubmatch(out)
	if fin == nil || req == nil || st == nil {
		return fmt.Errorf("cannot parse h2load output: %s", lastLines(out, 5))
	}
	// No protocol line: no connection got through its TLS handshake.
	proto := h2loadProto.FindStringSubmatch(out)
	if proto == nil {
		return fmt.Errorf("no connection completed its TLS handshake: %s", lastLines(out, 2))
	}
	// h2load falls back to HTTP/1.1 when the server does not offer h2;
	// such a step would pass HTTP/1.1 figures off as HTTP/2.
	if res.spec.proto == "h2" && proto[1] != "h2" {
		return errNoH2
	}
	res.seconds, _ = strconv.ParseFloat(fin[1], 64)
	if fin[2] == "ms" {
		res.seconds /= 1000
	}
	n := atoi(req[1:])
	s := atoi(st[1:])
	if n[2] == 0 {
		return fmt.Errorf("no request completed: %s", lastLines(out, 2))
	}
	res.requests = n[2]
	res.ok = s[0]
	res.status4 = s[2]
	// Every request done without a 2xx answer is a failure: non-2xx
	// answers, errors and timeouts alike.
	res.failed = max(n[2]-s[0], 0)
	if res.seconds > 0 {
		res.rps = float64(res.ok) / res.seconds
	}

	var times []time.Duration
	sc := bufio.NewScanner(log)
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 {
			continue
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			continue
		}
		times = append(times, time.Duration(us)*time.Microsecond)
	}
	res.p50, res.p99 = percentiles(times)
	return nil
}

// newConnSummary is what `kgbench newconn` prints.
type newConnSummary struct {
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"`
	OK       int     `json:"ok"`
	Status4  int     `json:"status_4xx"`
	Errors   int     `json:"errors"`
	P50      int64   `json:"p50_us"`
	P99      int64   `json:"p99_us"`
	LastErr  string  `json:"last_error,omitempty"`
}

func parseNewConn(out []byte, res *stepResult) error {
	var s newConnSummary
	if err := json.Unmarshal(bytes.TrimSpace(out), &s); err != nil {
		return fmt.Errorf("cannot parse newconn output %q: %w", lastLines(string(out), 3), err)
	}
	res.seconds, res.requests, res.ok, res.status4 = s.Seconds, s.Requests, s.OK, s.Status4
	res.failed = s.Requests - s.OK + s.Errors
	if s.Seconds > 0 {
		res.rps = float64(s.OK) / s.Seconds
	}
	res.p50 = time.Duration(s.P50) * time.Microsecond
	res.p99 = time.Duration(s.P99) * time.Microsecond
	res.lastErr = s.LastErr
	if s.OK == 0 && s.LastErr == errNoH2.Error() {
		return errNoH2
	}
	if s.Requests == 0 && s.Errors == 0 {
		return errors.New("no request completed within the step (connections hung)")
	}
	if s.OK == 0 && s.LastErr != "" {
		return fmt.Errorf("no request succeeded: %s", s.LastErr)
	}
	return nil
}

// percentiles returns the 50th and 99th percentiles of ts (nearest rank).
func percentiles(ts []time.Duration) (p50, p99 time.Duration) {
	if len(ts) == 0 {
		return 0, 0
	}
	slices.Sort(ts)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(ts))+0.5) - 1
		return ts[min(max(i, 0), len(ts)-1)]
	}
	return at(0.50), at(0.99)
}

func atoi(ss []string) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i], _ = strconv.Atoi(s)
	}
	return out
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
