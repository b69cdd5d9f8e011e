//go:build linux

package jail

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// StartOptions says where the sandbox init starts.
type StartOptions struct {
	// Enter runs fn on a thread that has joined the sandbox's network
	// namespace; the init is forked from that thread so it starts there.
	Enter  func(fn func() error) error
	Cgroup *os.File   // the sandbox's cgroup directory; the init starts inside it
	Stdio  []*os.File // stdin, stdout, stderr for the command
	// ExitFile, if set, receives the init's exit status (see Spec.ExitFD).
	ExitFile *os.File
}

// Start launches the sandbox init with spec in fresh mount, pid, ipc and
// uts namespaces, already inside the sandbox's cgroup and network
// namespace, so no instruction of the sandbox ever runs uncaptured.
func Start(spec *Spec, opts StartOptions) (*exec.Cmd, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
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

	cmd := exec.Command(self, InitArg)
	cmd.Env = []string{} // the agent's environment never reaches a sandbox
	cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdio[0], opts.Stdio[1], opts.Stdio[2]
	cmd.ExtraFiles = []*os.File{r}
	if opts.ExitFile != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, opts.ExitFile)
		spec.ExitFD = specFD + 1
	}
	// No Pdeathsig: a sandbox outlives a crashed agent. Its traffic fails
	// closed meanwhile (the pinned capture programs still send it to the
	// agent's address, where nothing answers), and the restarted agent
	// adopts it again or ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		UseCgroupFD: true,
		CgroupFD:    int(opts.Cgroup.Fd()),
		Setsid:      true, // no controlling terminal: TIOCSTI cannot reach the operator's shell
	}

	if err := opts.Enter(cmd.Start); err != nil {
		w.Close()
		return nil, fmt.Errorf("start sandbox init: %w", err)
	}
	err = json.NewEncoder(w).Encode(spec)
	w.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("send spec to sandbox init: %w", err)
	}
	return cmd, nil
}
