//go:build linux

package hostagent

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/pkg/jail"
	"github.com/keygate/keygate/pkg/oci"
)

// Sandbox runtimes and capture modes (api.SandboxSpec).
const (
	runtimeNative = "native"
	runtimeRunsc  = "runsc"
	captureCgroup = "cgroup"
	captureTC     = "tc"
)

// runscHome is the sandbox user's home under runsc: a private tmpfs.
const runscHome = "/home"

// runscPersistentArgs is what a persistent runsc sandbox's first process
// runs: nothing, until commands arrive with runsc exec. It says it runs on
// its stdout (runscReady), then leaves stdout and stderr for /dev/null.
var runscPersistentArgs = []string{"/bin/sh", "-c",
	"echo " + runscReady + "; exec >/dev/null 2>&1; trap 'exit 0' TERM; while :; do sleep 3600 & wait; done"}

// runscReady is the line a persistent runsc sandbox's first process
// writes once it runs: the container exists by then, so runsc exec finds
// it, and the setup stage has installed its files.
const runscReady = "keygate-ready"

// runscStartTimeout bounds how long a persistent runsc sandbox may take
// to come up.
const runscStartTimeout = 30 * time.Second

// runscContainer names a sandbox's container in runsc's state.
func runscContainer(id string) string { return "keygate-" + id }

func (a *Agent) runscRoot() string { return filepath.Join(a.cfg.StateDir, "runsc", "state") }

func (a *Agent) runscBundle(id string) string {
	return filepath.Join(a.cfg.StateDir, "runsc", "bundles", id)
}

// runscFlags are runsc's global flags for sandbox s. Cgroups are the
// agent's business (runsc starts inside the sandbox's cgroup and stays
// there, so cgroup.kill ends all of it); the gofer gets a fresh empty
// network namespace rather than a pinned one runsc would leave behind.
// With cgroup capture, runsc uses the host network stack inside the
// sandbox's namespace, so the Sentry's sockets are host sockets the
// cgroup programs capture; with tc capture it uses its own netstack, whose
// frames the veth programs steer.
func (a *Agent) runscFlags(s *sandbox) []string {
	flags := []string{
		"--root", a.runscRoot(),
		"--platform", a.cfg.RunscPlatform,
		"--ignore-cgroups",
		"--gofer-network-namespace=new",
		// The root is the host's (or --rootfs), read through the gofer;
		// the sandbox's writes land in its own memory, never on the host.
		"--overlay2=root:memory",
	}
	if s.capture == captureCgroup {
		flags = append(flags, "--network=host")
	}
	if a.cfg.RunscDebugLog != "" {
		flags = append(flags, "--debug", "--debug-log="+filepath.Join(a.cfg.RunscDebugLog, s.id)+"/")
	}
	return flags
}

// runscEnv is the sandbox's environment under runsc: HOME is its home
// there, and the trust-store variables name keygate's bundle where it
// lies on the host's root, which runsc shows read-only.
func (a *Agent) runscEnv(s *sandbox, callerEnv []string) []string {
	env, _ := a.sandboxEnv(s, callerEnv)
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "HOME":
			env[i] = "HOME=" + runscHome
		case slices.Contains(caEnvVars, k):
			env[i] = k + "=" + a.bundle
		}
	}
	return env
}

// startRunsc runs argv in s under gVisor: it writes the OCI bundle and
// starts `runsc run` inside the sandbox's cgroup, with the caller's stdio.
// Like the native init, the runsc process is watched and the sandbox torn
// down when it exits. A nil argv makes a persistent sandbox.
func (a *Agent) startRunsc(s *sandbox, argv, callerEnv []string, dir string, stdio []*os.File) error {
	var ready *os.File // a persistent sandbox's stdout and stderr, read until it runs
	if argv == nil {
		argv = runscPersistentArgs
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		defer w.Close()
		// stderr too, so that a failed start says why.
		ready, stdio = r, []*os.File{stdio[0], w, w}
	}
	rootfs := cmp.Or(s.rootfs, a.cfg.RunscRootfs)
	argv, env, asRoot, err := a.runscSetup(rootfs, a.runscEnv(s, callerEnv), argv)
	if err != nil {
		return err
	}
	cfg := oci.Config{
		Rootfs: rootfs, Args: argv, Env: env, StartAsRoot: asRoot,
		Cwd: usableDir(dir), Home: runscHome, UID: a.cfg.SandboxUID, GID: a.cfg.SandboxUID,
		Hostname: "keygate-" + s.id, NetNS: s.net.Path(), WritableRoot: true,
		// The control socket needs no hiding: runsc refuses connections
		// to host unix sockets (--host-uds defaults to none).
		Hide: runscHidden(a),
	}
	if err := oci.Write(a.runscBundle(s.id), cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(a.runscRoot(), 0o700); err != nil {
		return err
	}
	cgfd, err := s.cgroup.Open()
	if err != nil {
		return err
	}
	defer cgfd.Close()

	args := append(a.runscFlags(s), "run", "--bundle", a.runscBundle(s.id), runscContainer(s.id))
	cmd := exec.Command(a.cfg.RunscPath, args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(cgfd.Fd()),
		Setsid:      true,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start runsc: %w", err)
	}
	s.mu.Lock()
	s.initPID = cmd.Process.Pid
	s.mu.Unlock()
	if err := a.saveRecord(s); err != nil {
		a.log.Warn("sandbox record without runsc pid", "sandbox", s.id, "err", err)
	}
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		a.finish(s, a.waitChild(s, cmd))
	}()
	if ready != nil {
		stdio[1].Close() // runsc has its copy: EOF if it ends first
		return waitRunscReady(ready)
	}
	return nil
}

// waitRunscReady reads a persistent runsc sandbox's stdout until its first
// process says it runs, for at most runscStartTimeout.
func waitRunscReady(r *os.File) error {
	if err := r.SetReadDeadline(time.Now().Add(runscStartTimeout)); err != nil {
		return err
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	switch line = strings.TrimSpace(line); line {
	case runscReady:
		return nil
	case "":
		return fmt.Errorf("runsc sandbox did not start: %w", err)
	}
	return fmt.Errorf("runsc sandbox did not start: %s", line)
}

// runscSetup returns the argv and environment of a runsc sandbox's first
// process, and whether it starts as root: on the host's root, the agent's
// setup stage
// (jail.RunscSetupArgv) writes keygate's trust bundle over the system's
// and its resolv.conf over /etc/resolv.conf, in the sandbox's private
// overlay, then becomes the sandbox user and execs argv. (runsc does not
// apply binds of single files over its root, which is how the native jail
// shows them.) On another root the agent's binary may not be there:
// argv runs as it is, and only the trust-store variables name the bundle;
// tools that ignore them fail TLS, closed. The setup stage runs with the
// agent's environment, not env, which it passes on to argv.
func (a *Agent) runscSetup(rootfs string, env, argv []string) ([]string, []string, bool, error) {
	if rootfs != "" && rootfs != "/" {
		return argv, env, false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, false, fmt.Errorf("find the agent binary: %w", err)
	}
	if oci.Under(self, runscHidden(a)) {
		return argv, env, false, nil // not visible in the sandbox
	}
	setup := jail.RunscSetup{
		UID: a.cfg.SandboxUID, GID: a.cfg.SandboxUID,
		Files: []jail.FileCopy{
			{Src: a.bundle, Dst: systemBundles, IfExists: true},
			{Src: a.resolv, Dst: []string{"/etc/resolv.conf"}},
		},
	}
	full, err := jail.RunscSetupArgv(self, setup, env, argv)
	if err != nil {
		return nil, nil, false, err
	}
	return full, jail.RunscSetupEnv, true, nil
}

// runscHidden lists what a runsc sandbox must not see of the host's root:
// the agent's state.
func runscHidden(a *Agent) []string { return []string{a.cfg.StateDir} }

// usableDir returns dir if the sandbox user can enter it (it is on the
// shared read-only root), else "" for the home.
func usableDir(dir string) string {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() && fi.Mode().Perm()&0o001 != 0 {
		return dir
	}
	return ""
}

// execRunsc runs a command in a persistent runsc sandbox with runsc exec,
// described by a process.json: the sandbox user, no capabilities,
// no_new_privs, the sandbox's environment.
func (a *Agent) execRunsc(s *sandbox, argv, callerEnv []string, dir string, stdio []*os.File) (*exec.Cmd, error) {
	env := a.runscEnv(s, callerEnv)
	cwd := usableDir(dir)
	if cwd == "" {
		cwd = runscHome
	}
	proc := map[string]any{
		"user": map[string]uint32{"uid": a.cfg.SandboxUID, "gid": a.cfg.SandboxUID},
		"args": argv, "env": env, "cwd": cwd, "noNewPrivileges": true,
		"capabilities": map[string][]string{
			"bounding": {}, "effective": {}, "inheritable": {}, "permitted": {}, "ambient": {},
		},
	}
	b, err := json.Marshal(proc)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(a.runscBundle(s.id), "exec-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	cgfd, err := s.cgroup.Open()
	if err != nil {
		return nil, err
	}
	defer cgfd.Close()
	args := append(a.runscFlags(s), "exec", "--process", f.Name(), runscContainer(s.id))
	cmd := exec.Command(a.cfg.RunscPath, args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd()), Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start runsc exec: %w", err)
	}
	// runsc exec reads the process file at start; give it a moment
	// before the deferred removal.
	time.Sleep(50 * time.Millisecond)
	return cmd, nil
}

// cleanupRunsc removes what runsc keeps of a sandbox after its processes
// are gone: its container state (a killed runsc leaves it "running") and
// the bundle.
func (a *Agent) cleanupRunsc(s *sandbox) {
	if s.runtime != runtimeRunsc {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append(slices.Clone(a.runscFlags(s)), "delete", "--force", runscContainer(s.id))
	if out, err := exec.CommandContext(ctx, a.cfg.RunscPath, args...).CombinedOutput(); err != nil &&
		!strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not found") {
		a.log.Debug("runsc delete", "sandbox", s.id, "err", err, "output", strings.TrimSpace(string(out)))
	}
	os.RemoveAll(a.runscBundle(s.id))
}

// startSandbox starts s's first process with the sandbox's runtime.
func (a *Agent) startSandbox(s *sandbox, argv, callerEnv []string, dir string, stdio []*os.File) error {
	if s.runtime == runtimeRunsc {
		return a.startRunsc(s, argv, callerEnv, dir, stdio)
	}
	return a.startInit(s, a.spec(s, argv, callerEnv, dir), stdio)
}
