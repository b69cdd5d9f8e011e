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
	Enter  func(fn func() error) error
	Cgroup *os.File
	Stdio  []*os.File
}

// Start reports ErrNotSupported.
func Start(*Spec, StartOptions) (*exec.Cmd, error) { return nil, ErrNotSupported }

// RunInit exits: there is no sandbox init on this system.
func RunInit() {
	fmt.Fprintln(os.Stderr, "keygate:", ErrNotSupported)
	os.Exit(125)
}
