//go:build linux

package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecArg is the argv[1] that makes the agent binary act as the last
// stage of Exec: already inside a sandbox's namespaces and cgroup, still
// root, it drops every privilege and becomes the command.
const ExecArg = "__keygate-sandbox-exec"

// ExecSpec is what the exec stage needs; it crosses a pipe as JSON.
type ExecSpec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Dir  string   `json:"dir,omitempty"` // "" or unusable = Home
	Home string   `json:"home"`
	UID  uint32   `json:"uid"`
	GID  uint32   `json:"gid"`
}

// ExecOptions says which sandbox Exec enters.
type ExecOptions struct {
	InitPID int        // host pid of the sandbox's init
	Cgroup  *os.File   // the sandbox's cgroup directory
	Stdio   []*os.File // stdin, stdout, stderr for the command
}

// nsenterPath is util-linux's nsenter, which can enter a mount and a pid
// namespace: a Go process cannot, its runtime being multithreaded before
// main runs.
var nsenterPath = "/usr/bin/nsenter"

// Exec starts a command in a running persistent sandbox: nsenter joins
// the init's mount, uts, ipc, net and pid namespaces from inside the
// sandbox's cgroup (so the capture programs see every socket the command
// makes), then runs the agent binary's exec stage, which drops privileges
// as the init did for its own command and execs the command.
func Exec(spec *ExecSpec, opts ExecOptions) (*exec.Cmd, error) {
	if len(spec.Argv) == 0 || spec.Argv[0] == "" {
		return nil, errors.New("no command given")
	}
	if spec.UID == 0 || spec.GID == 0 {
		return nil, errors.New("sandbox user must not be root")
	}
	if len(opts.Stdio) != 3 {
		return nil, fmt.Errorf("need 3 stdio files, got %d", len(opts.Stdio))
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()

	cmd := exec.Command(nsenterPath, "--target", strconv.Itoa(opts.InitPID),
		"--mount", "--uts", "--ipc", "--net", "--pid", "--", self, ExecArg)
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdio[0], opts.Stdio[1], opts.Stdio[2]
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		UseCgroupFD: true,
		CgroupFD:    int(opts.Cgroup.Fd()),
		Setsid:      true,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start nsenter: %w", err)
	}
	err = json.NewEncoder(w).Encode(spec)
	w.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("send spec to exec stage: %w", err)
	}
	return cmd, nil
}

// RunExec is the exec stage's main function. It returns only on failure,
// exiting 125 (setup) or 126/127 (the command could not run).
func RunExec() {
	code, err := runExec()
	fmt.Fprintf(os.Stderr, "keygate: sandbox exec: %v\n", err)
	os.Exit(code)
}

func runExec() (int, error) {
	// no_new_privs and the bounding set are per thread: exec from the
	// thread that set them.
	runtime.LockOSThread()
	f := os.NewFile(specFD, "spec")
	var spec ExecSpec
	if err := json.NewDecoder(f).Decode(&spec); err != nil {
		return 125, fmt.Errorf("read spec: %w", err)
	}
	f.Close()
	if spec.UID == 0 || spec.GID == 0 || len(spec.Argv) == 0 {
		return 125, errors.New("invalid exec spec")
	}
	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return 127, fmt.Errorf("%s: %w", spec.Argv[0], err)
	}
	dir := spec.Dir
	if dir == "" || unix.Access(dir, unix.X_OK) != nil {
		dir = spec.Home
	}
	if err := dropPrivileges(); err != nil {
		return 125, err
	}
	if err := becomeUser(spec.UID, spec.GID); err != nil {
		return 125, err
	}
	if err := os.Chdir(dir); err != nil {
		return 125, fmt.Errorf("chdir %s: %w", dir, err)
	}
	// When the agent ends the exec it kills nsenter, our parent, which
	// cannot pass SIGKILL on; the command then dies with it. Set after the
	// user change, which clears the setting; exec keeps it.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return 125, fmt.Errorf("set parent death signal: %w", err)
	}
	if os.Getppid() == 1 {
		return 125, errors.New("nsenter exited before the command started")
	}
	err = syscall.Exec(path, spec.Argv, spec.Env)
	return 126, fmt.Errorf("exec %s: %w", spec.Argv[0], err)
}

// becomeUser switches every thread to uid and gid with no supplementary
// groups; as uid and gid are not 0 this also clears all capabilities.
func becomeUser(uid, gid uint32) error {
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop groups: %w", err)
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		return fmt.Errorf("set gid: %w", err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		return fmt.Errorf("set uid: %w", err)
	}
	return nil
}
