// Package jail starts a sandbox's command: a small init process, re-executed
// from the agent's own binary inside the sandbox's namespaces, that builds
// the sandbox's view of the file system, drops every privilege and runs the
// command as an unprivileged user, reaping what it leaves behind.
package jail

import (
	"errors"
	"fmt"
	"path/filepath"
)

// InitArg is the argv[1] that makes the agent binary act as a sandbox init.
// cmd/keygated checks for it before anything else runs.
const InitArg = "__keygate-sandbox-init"

// Bind mounts Src read-only over Dst inside the sandbox.
type Bind struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

// Spec is everything the init process needs. It crosses from the agent to
// the init over a pipe as JSON; it holds placeholders, never secrets.
type Spec struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir,omitempty"` // working directory; "" or unusable = Home
	Home     string   `json:"home"`          // created on a private tmpfs, owned by UID
	UID      uint32   `json:"uid"`
	GID      uint32   `json:"gid"`
	Hostname string   `json:"hostname"`
	Hide     []string `json:"hide"`  // paths covered by an empty read-only tmpfs
	Binds    []Bind   `json:"binds"` // read-only file binds, e.g. the CA bundle
	// Persistent makes the init run no command of its own: it keeps the
	// sandbox's namespaces alive for commands started later with Exec,
	// reaps them, and exits on SIGTERM. Argv must then be empty.
	Persistent bool `json:"persistent,omitempty"`
	// ExitFD, if not 0, is a descriptor the init writes its exit status to
	// ("exit N\n") before it exits, so an agent that restarted in the
	// meantime, and so is not its parent, still learns it.
	ExitFD int `json:"exit_fd,omitempty"`
}

// Validate checks the spec before anything is started.
func (s *Spec) Validate() error {
	switch {
	case s.Persistent && len(s.Argv) != 0:
		return errors.New("a persistent sandbox init runs no command of its own")
	case !s.Persistent && (len(s.Argv) == 0 || s.Argv[0] == ""):
		return errors.New("no command given")
	}
	if s.UID == 0 || s.GID == 0 {
		return errors.New("sandbox user must not be root")
	}
	if !filepath.IsAbs(s.Home) {
		return fmt.Errorf("home %q: need an absolute path", s.Home)
	}
	for _, p := range s.Hide {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("hidden path %q: need an absolute path", p)
		}
	}
	for _, b := range s.Binds {
		if !filepath.IsAbs(b.Src) || !filepath.IsAbs(b.Dst) {
			return fmt.Errorf("bind %q → %q: need absolute paths", b.Src, b.Dst)
		}
	}
	return nil
}
