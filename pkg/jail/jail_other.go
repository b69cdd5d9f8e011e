//go:build !linux

package jail

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// ErrNotSupported is returned on systems other than Linux.
var ErrNotSupported = errors.New("sandboxes need Linux")

// StartOptions says where the sandbox init starts.
type StartOptions struct {
	Enter    func(fn func() error) error
	Cgroup   *os.File
	Stdio    []*os.File
	ExitFile *os.File
}

// Start reports ErrNotSupported.
func Start(*Spec, StartOptions) (*exec.Cmd, error) { return nil, ErrNotSupported }

// RunInit exits: there is no sandbox init on this system.
func RunInit() {
	fmt.Fprintln(os.Stderr, "keygate:", ErrNotSupported)
	os.Exit(125)
}

// ExecArg is the argv[1] of the exec stage.
const ExecArg = "__keygate-sandbox-exec"

// ExecSpec is what the exec stage needs.
type ExecSpec struct {
	Argv     []string
	Env      []string
	Dir      string
	Home     string
	UID, GID uint32
}

// ExecOptions says which sandbox Exec enters.
type ExecOptions struct {
	InitPID int
	Cgroup  *os.File
	Stdio   []*os.File
}

// Exec reports ErrNotSupported.
func Exec(*ExecSpec, ExecOptions) (*exec.Cmd, error) { return nil, ErrNotSupported }

// RunExec exits: there is no sandbox on this system.
func RunExec() {
	fmt.Fprintln(os.Stderr, "keygate:", ErrNotSupported)
	os.Exit(125)
}

// RunRunscSetup exits: there is no sandbox on this system.
func RunRunscSetup() {
	fmt.Fprintln(os.Stderr, "keygate:", ErrNotSupported)
	os.Exit(125)
}
