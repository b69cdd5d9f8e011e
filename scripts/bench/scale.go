package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

// maxConnsPerSandbox stays under the proxy's per-sandbox connection cap
// (proxy.DefaultMaxConnsPerSandbox, 1024), so the idle-connection figure
// spreads its connections over several sandboxes.
const maxConnsPerSandbox = 1000

// probeTimeout bounds each scale probe, so that a hung sandbox cannot stall
// the run; the parent context's end still stops everything at once.
const probeTimeout = 2 * time.Minute

// scaleResults are the figures that are not about request load.
type scaleResults struct {
	sandboxes      int
	create         []time.Duration // each create, in order (i live before it)
	destroy        []time.Duration
	rssBefore      int64 // keygated RSS with no sandbox, and with all live
	rssLive        int64
	lifecycleErr   string
	connect        []connRow
	dnsRows        []dnsRow
	idleConns      int
	idleOpen       int
	idleRSSBefore  int64
	idleRSSAfter   int64
	idleErr        string
	idleCPUSeconds float64 // keygated CPU spent opening them
}

// connRow is one connect-latency measurement.
type connRow struct {
	name string
	res  connLatency
	err  string
}

// dnsRow is one resolver-throughput measurement.
type dnsRow struct {
	name string
	res  dnsLoad
	err  string
}

// runScale measures everything that is not request load.
func runScale(ctx context.Context, e *env, res *results) error {
	s := &scaleResults{sandboxes: e.opts.sandboxes, idleConns: e.opts.idleConns}
	res.scale = s
	steps := []struct {
		what string
		fn   func(context.Context, *scaleResults) error
	}{
		{"sandbox lifecycle", e.sandboxLifecycle},
		{"connect latency", e.connectLatency},
		{"resolver throughput", e.resolverThroughput},
		{"idle connections", e.idleConnections},
	}
	for _, st := range steps {
		progress("scale: %s", st.what)
		if err := st.fn(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

// sandboxLifecycle creates sandboxes one after another through the control
// API until s.sandboxes are live, timing each create, reads keygated's RSS,
// then removes them one by one, timing each removal.
func (e *env) sandboxLifecycle(ctx context.Context, s *scaleResults) error {
	c := e.agent.client
	s.rssBefore, _ = rssBytes(e.agent.pid())
	var ids []string
	defer func() {
		// Whatever is still live after an error goes too.
		for _, id := range ids {
			c.Do(context.Background(), http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id), nil, nil)
		}
	}()
	spec := api.SandboxSpec{Vaults: []string{benchVault}}
	for i := range s.sandboxes {
		var sb api.Sandbox
		t0 := time.Now()
		if err := c.Do(ctx, http.MethodPost, "/v1/sandboxes", spec, &sb); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.lifecycleErr = fmt.Sprintf("create #%d: %v", i+1, err)
			break
		}
		s.create = append(s.create, time.Since(t0))
		ids = append(ids, sb.ID)
		if (i+1)%100 == 0 {
			progress("  %d sandboxes live", i+1)
		}
	}
	time.Sleep(time.Second)
	s.rssLive, _ = rssBytes(e.agent.pid())

	for len(ids) > 0 {
		t0 := time.Now()
		if err := c.Do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(ids[0]), nil, nil); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.lifecycleErr = fmt.Sprintf("remove %s: %v", ids[0], err)
			return nil
		}
		s.destroy = append(s.destroy, time.Since(t0))
		ids = ids[1:]
	}
	return nil
}

// connectLatency times connects from inside a sandbox (captured, to the
// proxy) to the credential host, whose TLS keygate terminates, and to an
// allowed host without credentials, whose TLS it splices through; and the
// same connects from the host, uncaptured, straight to the upstream.
func (e *env) connectLatency(ctx context.Context, s *scaleResults) error {
	n := pick(e.opts.quick, 200, 1000)
	bw := e.world
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cases := []struct {
		name string
		cmd  *exec.Cmd
	}{
		{"host, no capture (to the upstream)",
			exec.CommandContext(ctx, e.self, "connlat", "--addr", bw.addr.String(), "-n", strconv.Itoa(n))},
		{"sandbox, captured: TLS terminated by keygate",
			e.sandboxCommand(ctx, nil, false, e.self, "connlat",
				"--addr", hostPort(bw.host, upstreamPort), "-n", strconv.Itoa(n))},
		{"sandbox, captured: allowed host, TLS spliced",
			e.sandboxCommand(ctx, []string{"--allow", bw.OtherHost()}, false, e.self, "connlat",
				"--addr", hostPort(bw.OtherHost(), 443), "-n", strconv.Itoa(n))},
	}
	for _, c := range cases {
		r := connRow{name: c.name}
		if err := runJSON(c.cmd, &r.res); err != nil {
			if parent.Err() != nil {
				return parent.Err()
			}
			r.err = err.Error()
		}
		s.connect = append(s.connect, r)
	}
	return nil
}

// resolverThroughput loads keygate's resolver from inside a sandbox with
// queries for the credential host, which policy allows; and, for scale,
// the world's own DNS server from the host.
func (e *env) resolverThroughput(ctx context.Context, s *scaleResults) error {
	d := pick(e.opts.quick, "1s", "3s")
	bw := e.world
	args := []string{"dnsload", "--server", bw.DNS.String(), "--name", bw.host, "-c", "16", "-d", d}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cases := []struct {
		name string
		cmd  *exec.Cmd
	}{
		{"keygate resolver (sandbox, 16 in flight)",
			e.sandboxCommand(ctx, nil, false, append([]string{e.self}, args...)...)},
		{"world DNS server direct (host, 16 in flight)",
			exec.CommandContext(ctx, e.self, args...)},
	}
	for _, c := range cases {
		r := dnsRow{name: c.name}
		if err := runJSON(c.cmd, &r.res); err != nil {
			if parent.Err() != nil {
				return parent.Err()
			}
			r.err = err.Error()
		}
		s.dnsRows = append(s.dnsRows, r)
	}
	return nil
}

// sandboxCommand runs argv in a new cgroup-captured sandbox bound to the
// bench vault, with extra run flags. With auth, a shell appends the
// sandbox's placeholder as -H "authorization: Bearer ...".
func (e *env) sandboxCommand(ctx context.Context, extra []string, auth bool, argv ...string) *exec.Cmd {
	args := append([]string{"run", "--vault", benchVault, "--capture", "cgroup"}, extra...)
	args = append(args, "--")
	if auth {
		args = append(args, "sh", "-c", fmt.Sprintf(`exec "$0" "$@" -H "authorization: Bearer $%s"`, benchEnvVar))
	}
	return e.agent.command(ctx, append(args, argv...)...)
}

// runJSON runs cmd and decodes its stdout's last line into v.
func runJSON(cmd *exec.Cmd, v any) error {
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, lastLines(errb.String(), 2))
	}
	line := lastLines(out.String(), 1)
	if err := json.Unmarshal([]byte(line), v); err != nil {
		return fmt.Errorf("parse %q: %w", line, err)
	}
	return nil
}

func hostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }

// idleConnections opens s.idleConns TLS connections from sandboxes to the
// credential host, one request each, and holds them idle; keygated's RSS
// before and after gives the memory per idle connection.
func (e *env) idleConnections(ctx context.Context, s *scaleResults) error {
	type holder struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var hs []holder
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	defer func() {
		for _, h := range hs {
			h.stdin.Close()
			h.cmd.Wait()
		}
	}()
	addr := hostPort(e.world.host, upstreamPort)
	// Start the sandboxes first and wait until each holder runs, so that
	// the baseline includes the sandboxes themselves.
	for left := s.idleConns; left > 0; left -= maxConnsPerSandbox {
		n := min(left, maxConnsPerSandbox)
		cmd := e.sandboxCommand(ctx, nil, true, e.self, "idle", "--addr", addr, "-n", strconv.Itoa(n))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		hs = append(hs, holder{cmd, stdin, bufio.NewReader(stdout)})
	}
	// Each holder says "waiting" once its sandbox runs.
	for _, h := range hs {
		if _, err := h.out.ReadString('\n'); err != nil {
			if parent.Err() != nil {
				return parent.Err()
			}
			s.idleErr = fmt.Sprintf("a holder's sandbox did not start: %v", err)
			return nil
		}
	}
	time.Sleep(time.Second)
	s.idleRSSBefore, _ = rssBytes(e.agent.pid())
	cpu0, _ := cpuSeconds(e.agent.pid())
	for _, h := range hs {
		fmt.Fprintln(h.stdin, "go")
	}
	for _, h := range hs {
		line, err := h.out.ReadString('\n')
		if err != nil {
			s.idleErr = fmt.Sprintf("holder ended early: %v", err)
			continue
		}
		var rep idleReport
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			s.idleErr = fmt.Sprintf("parse %q: %v", line, err)
			continue
		}
		s.idleOpen += rep.Open
		if rep.Errors > 0 {
			s.idleErr = fmt.Sprintf("%d connections failed: %s", rep.Errors, rep.Err)
		}
	}
	cpu1, _ := cpuSeconds(e.agent.pid())
	s.idleCPUSeconds = cpu1 - cpu0
	time.Sleep(time.Second)
	s.idleRSSAfter, _ = rssBytes(e.agent.pid())
	return parent.Err()
}
