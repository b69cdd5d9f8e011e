package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/cgroup"
)

// The agent's own ranges, apart from the e2e tests' and the demo's.
const (
	sandboxCIDR  = "10.236.0.0/16"
	sandboxCIDR6 = "fd6b:6762:656e::/48"
	cgroupName   = "keygate-bench"
	benchVault   = "bench"
	benchCred    = "api"
	benchEnvVar  = "BENCH_TOKEN"
	agentTimeout = 15 * time.Second
)

// agent is the keygated under test.
type agent struct {
	cmd     *exec.Cmd
	socket  string
	log     string // keygated's stderr
	exited  chan struct{}
	client  *api.Client
	bin     string // the keygate CLI
	metrics string // keygated's /metrics and /debug/pprof address, or ""
}

// startAgent runs keygated with a state directory, socket, sandbox range
// and parent cgroup of its own, trusting the world's CAs, and sets up the
// vault and credential every keygate row uses.
func (e *env) startAgent(ctx context.Context, cl *cleanups) error {
	root, err := cgroup.Mountpoint()
	if err != nil {
		return fmt.Errorf("find cgroup2 mount: %w", err)
	}
	a := &agent{
		socket: e.path("keygate.sock"),
		log:    e.path("keygated.log"),
		exited: make(chan struct{}),
		bin:    e.keygate,
	}
	logf, err := os.Create(a.log)
	if err != nil {
		return err
	}
	args := []string{
		"--state-dir", e.path("state"),
		"--socket", a.socket,
		"--upstream-dns", e.world.DNS.String(),
		"--upstream-ca", e.world.caFile,
		"--allow-private-upstream", worldConfig.Prefix.String(),
		"--sandbox-cidr", sandboxCIDR,
		"--cgroup-parent", filepath.Join(root, cgroupName),
		"--log-level", "warn",
	}
	// Sandbox IPv6 addresses and the agent's IPv6 service address come
	// from a /48 that defaults to the same one for every agent; a build
	// that can be given its own gets one, so that tests running beside
	// the benchmark keep theirs.
	help := output(e.keygated, "--help")
	if strings.Contains(help, "-sandbox-cidr6") {
		args = append(args, "--sandbox-cidr6", sandboxCIDR6)
	}
	// Profiles come from the metrics listener, on loopback.
	if e.opts.profile && strings.Contains(help, "-metrics-addr") {
		if a.metrics, err = freeLoopbackAddr(); err != nil {
			return err
		}
		args = append(args, "--metrics-addr", a.metrics)
	}
	a.cmd = exec.Command(e.keygated, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start keygated: %w", err)
	}
	go func() {
		a.cmd.Wait()
		logf.Close()
		close(a.exited)
	}()
	cl.add("stop keygated", a.stop)
	a.client = api.NewClient(a.socket)
	e.agent = a

	if err := a.waitReady(ctx); err != nil {
		return err
	}
	if _, err := a.kg(ctx, "", "vault", "create", benchVault); err != nil {
		return err
	}
	_, err = a.kg(ctx, e.world.secret+"\n", "cred", "add", benchVault, benchCred,
		"--env", benchEnvVar, "--domain", e.world.host)
	return err
}

// waitReady waits until keygated answers on its socket.
func (a *agent) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(agentTimeout)
	for time.Now().Before(deadline) {
		if _, err := a.kg(ctx, "", "vault", "list"); err == nil {
			return nil
		}
		select {
		case <-a.exited:
			return fmt.Errorf("keygated exited during start:\n%s", tail(a.log, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("keygated not ready after %v:\n%s", agentTimeout, tail(a.log, 20))
}

// stop sends SIGTERM and waits for keygated to end, killing it if it does
// not within agentTimeout.
func (a *agent) stop() error {
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(agentTimeout):
		a.cmd.Process.Kill()
		<-a.exited
		return fmt.Errorf("keygated did not stop within %v of SIGTERM", agentTimeout)
	}
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("keygated exited with %d:\n%s", code, tail(a.log, 20))
	}
	return nil
}

// pid is keygated's process id: the proxy, resolver and API all run in it.
func (a *agent) pid() int { return a.cmd.Process.Pid }

// kg runs the keygate CLI against the agent with stdin as input.
func (a *agent) kg(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := a.command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("keygate %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// command returns an unstarted keygate CLI command against the agent. A
// cancelled ctx interrupts it, which ends its sandbox.
func (a *agent) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, a.bin, args...)
	cmd.Env = append(os.Environ(), "KEYGATE_SOCKET="+a.socket)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
