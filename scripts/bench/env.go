package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// workParent is where the work directory lives. Sandboxes see the host's
// /run read-only but get a private /tmp, so the helper binary they run and
// the files they read must be under /run.
const workParent = "/run"

// tools are the external programs the run needs, with the package that
// brings each (scripts/bench/install.sh installs them).
var tools = []struct{ bin, pkg string }{
	{"h2load", "nghttp2-client"},
	{"mitmdump", "mitmproxy"},
	{"squid", "squid-openssl"},
}

// env is what every step shares: paths, the world, the agent.
type env struct {
	opts     options
	dir      string // work directory under /run
	self     string // copy of this binary in dir, runnable inside sandboxes
	keygate  string // absolute paths of the binaries under test
	keygated string
	machine  machine

	world *benchWorld
	agent *agent
	// background is how many CPUs the machine kept busy while no load ran,
	// measured once the rows are up; steps take it off their machine CPU.
	background float64
}

// newEnv creates the work directory, copies this binary into it and
// checks that every tool is installed.
func newEnv(o options, cl *cleanups) (*env, error) {
	e := &env{opts: o}
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			return nil, fmt.Errorf("%s not found (apt-get install %s, or run scripts/bench/install.sh)", t.bin, t.pkg)
		}
	}
	var err error
	if e.keygate, err = binary(o.bin, "keygate"); err != nil {
		return nil, err
	}
	if e.keygated, err = binary(o.bin, "keygated"); err != nil {
		return nil, err
	}

	if e.dir, err = os.MkdirTemp(workParent, "kgbench-"); err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	if err := os.Chmod(e.dir, 0o755); err != nil {
		return nil, err
	}
	cl.add("remove work directory", func() error {
		if o.keep {
			log.Printf("work directory kept: %s", e.dir)
			return nil
		}
		return os.RemoveAll(e.dir)
	})

	e.self = filepath.Join(e.dir, "kgbench")
	if err := copySelf(e.self); err != nil {
		return nil, err
	}
	e.machine = describeMachine()
	if o.commit != "" {
		e.machine.commit = o.commit
	}
	return e, nil
}

// binary returns the absolute path of name in dir, which must exist.
func binary(dir, name string) (string, error) {
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: %w (run make build)", name, err)
	}
	return p, nil
}

// copySelf copies the running executable to dst.
func copySelf(dst string) error {
	src, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// path returns the name of a file in the work directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// machine describes where and with what the run happened.
type machine struct {
	cpus       int
	model      string
	kernel     string
	memory     string
	goVersion  string
	versions   []string // "tool: version" lines
	commit     string
	loadBefore string
	loadAfter  string
	// others holds every other keygated agent seen while the run measured;
	// see watchOthers.
	others map[int]bool
}

// watchOthers records, twice a second until stop is called, the keygated
// agents other than ours running on the host. Another agent competes for
// the CPU and, when it starts, removes the host links of sandboxes it has
// no record of, ours included (hostagent's removeStrays), which breaks
// their network. stop returns what was seen.
func (e *env) watchOthers() (stop func() map[int]bool) {
	seen := make(map[int]bool)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, pid := range otherAgents(e.agent.pid()) {
				seen[pid] = true
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() map[int]bool {
		close(done)
		<-finished
		return seen
	}
}

func describeMachine() machine {
	m := machine{
		cpus:       runtime.NumCPU(),
		model:      cpuModel(),
		kernel:     firstLine(output("uname", "-sr")),
		memory:     memTotal(),
		goVersion:  runtime.Version(),
		commit:     gitDescribe(),
		loadBefore: loadAverage(),
	}
	m.versions = []string{
		"h2load: " + firstLine(output("h2load", "--version")),
		"mitmproxy: " + firstLine(output("mitmdump", "--version")),
		"squid: " + firstLine(output("squid", "-v")),
		"openssl: " + firstLine(output("openssl", "version")),
	}
	return m
}

// gitDescribe names the checkout's commit, or "unknown" outside a checkout.
func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return firstLine(string(out))
}

// output runs a command and returns its stdout and stderr, or "" if it
// could not run.
func output(name string, args ...string) string {
	var b bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil && b.Len() == 0 {
		return ""
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	var kb int64
	for _, line := range strings.Split(string(b), "\n") {
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}

// loadAverage returns the 1, 5 and 15 minute load averages and the time.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return fmt.Sprintf("%s %s %s at %s", f[0], f[1], f[2], time.Now().UTC().Format("15:04:05Z"))
}
