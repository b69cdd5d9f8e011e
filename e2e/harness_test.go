//go:build linux

// The end-to-end tests run keygate against the real kernel: real
// keygated and keygate processes, real network namespaces, cgroups and BPF
// programs, real TLS and DNS, real clients inside sandboxes, and a test
// world (pkg/testworld) standing in for the internet. It needs root; CI
// sets KEYGATE_REQUIRE_ROOT so that a missing root fails instead of
// skipping.

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/pkg/cgroup"
	"github.com/keygate/keygate/pkg/testworld"
)

// worldPrefix is the test world's subnet.
var worldPrefix = netip.MustParsePrefix("10.250.0.0/24")

// binDir holds the keygate and keygated binaries built for this run.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// Sandboxes get private /tmp and /var/tmp, so the binaries they run
	// (the test clients) live under /run, which they see read-only.
	dir, err := os.MkdirTemp("/run", "keygate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	pkgs := map[string]string{
		"keygate":    "../cmd/keygate",
		"keygated":   "../cmd/keygated",
		"loadclient": "./internal/loadclient",
		"wsclient":   "./internal/wsclient",
	}
	for bin, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", bin, err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

// world starts a test world for t and removes it afterwards.
func world(t *testing.T) *testworld.World {
	t.Helper()
	w, err := testworld.Start(testworld.Config{Name: "kge2e", Prefix: worldPrefix})
	if err != nil {
		t.Fatalf("start test world: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close test world: %v", err)
		}
	})
	return w
}

// agent is a keygated process under test.
type agent struct {
	t        *testing.T
	dir      string
	socket   string
	cgroup   string
	args     []string // keygated's flags, kept for restarts
	cmd      *exec.Cmd
	log      *syncBuffer // keygated's stderr
	exited   chan struct{}
	stopOnce sync.Once
}

// startAgent runs keygated against w with its own state dir, socket,
// sandbox range and parent cgroup, and stops it when t ends.
func startAgent(t *testing.T, w *testworld.World, flags ...string) *agent {
	t.Helper()
	testutil.RequireRoot(t)
	root, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	// Traversable, as /run/keygate is: runsc sandboxes read the CA bundle
	// from the share directory beside the socket. The state directory in
	// it stays 0700.
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	a := &agent{
		t:      t,
		dir:    dir,
		socket: filepath.Join(dir, "keygate.sock"),
		cgroup: filepath.Join(root, "keygate-e2e-"+randHex(4)),
		log:    &syncBuffer{},
	}
	a.args = []string{
		"--state-dir", filepath.Join(dir, "state"),
		"--socket", a.socket,
		"--upstream-dns", w.DNS.String(),
		"--upstream-ca", w.CAFile,
		"--allow-private-upstream", worldPrefix.String(),
		"--allow-private-upstream", testworld.DefaultPrefix6.String(),
		"--sandbox-cidr", "10.235.0.0/16",
		"--sandbox-cidr6", "fd6b:6761:7435::/48",
		"--cgroup-parent", a.cgroup,
		"--log-level", "debug",
	}
	a.args = append(a.args, flags...)
	t.Cleanup(func() { a.stop() })
	a.start()
	return a
}

// start runs keygated with a.args and waits until its API answers.
func (a *agent) start() {
	t := a.t
	t.Helper()
	a.cmd = exec.Command(filepath.Join(binDir, "keygated"), a.args...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.exited = make(chan struct{})
	a.stopOnce = sync.Once{}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start keygated: %v", err)
	}
	exited := a.exited
	go func() {
		a.cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, code := a.kg("", "vault", "list"); code == 0 {
			return
		}
		select {
		case <-exited:
			t.Fatalf("keygated exited during start:\n%s", a.log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("keygated not ready after 10s:\n%s", a.log.String())
}

// kill sends SIGKILL to keygated and waits for it to die: a crash.
func (a *agent) kill() {
	a.stopOnce.Do(func() {
		a.cmd.Process.Kill()
		<-a.exited
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agent) stop() {
	a.stopOnce.Do(func() {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(15 * time.Second):
			a.cmd.Process.Kill()
			<-a.exited
			a.t.Errorf("keygated did not stop within 15s of SIGTERM")
		}
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			a.t.Errorf("keygated exited with %d:\n%s", code, a.log.String())
		}
	})
}

// kg runs the keygate CLI against this agent with stdin as its input.
func (a *agent) kg(stdin string, args ...string) (stdout, stderr string, code int) {
	cmd := exec.Command(filepath.Join(binDir, "keygate"), args...)
	cmd.Env = append(os.Environ(), "KEYGATE_SOCKET="+a.socket)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		code = -1
	}
	return out.String(), errb.String(), code
}

// mustKG runs the CLI and fails t unless it exits 0.
func (a *agent) mustKG(stdin string, args ...string) string {
	a.t.Helper()
	out, errOut, code := a.kg(stdin, args...)
	if code != 0 {
		a.t.Fatalf("keygate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// run runs script with sh -c in a new sandbox and returns its output.
func (a *agent) run(runArgs []string, script string) (stdout, stderr string, code int) {
	args := append([]string{"run"}, runArgs...)
	args = append(args, "--", "sh", "-c", script)
	return a.kg("", args...)
}

// secret returns a fresh random secret that cannot occur by chance in any
// output the tests search.
// credentialedAgent starts a world and keygated with flags, and a vault
// "v" holding credential "api" (env API_KEY) approved for the world's API
// host; it returns the real secret.
func credentialedAgent(t *testing.T, flags ...string) (*testworld.World, *agent, string) {
	t.Helper()
	w := world(t)
	a := startAgent(t, w, flags...)
	key := secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	return w, a, key
}

func secret(t *testing.T) string {
	t.Helper()
	return "sk-test-" + randHex(16)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for a process's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
