package jail

import (
	"encoding/json"
	"errors"
)

// RunscSetupArg, as argv[1], makes the agent binary the first process of a
// gVisor (runsc) sandbox. runsc shows the host's root with the sandbox's
// writes kept in a private overlay in its memory, but it does not apply
// binds of single files over that root, so keygate's trust bundle and
// resolv.conf cannot be mounted at the system paths as the native jail
// does. This stage writes them there instead, into the overlay (the
// host's files never change), then becomes the sandbox user with no
// capabilities and execs the command.
const RunscSetupArg = "__keygate-runsc-setup"

// RunscSetup is what the setup stage does, passed as its argv[2] in JSON.
// The command's environment follows as the next Envc arguments, then the
// command: the stage itself runs with an environment of the agent's only,
// so that nothing the caller sets (LD_PRELOAD, GODEBUG) reaches code that
// runs as root.
type RunscSetup struct {
	UID, GID uint32
	Files    []FileCopy
	Envc     int
}

// FileCopy writes Src's content at every path of Dst, replacing what is
// there (a symbolic link included) with a regular file of mode 0644.
type FileCopy struct {
	Src string
	Dst []string
	// IfExists writes only at the paths of Dst that exist: a
	// distribution's trust bundle is at one of several usual paths.
	IfExists bool
}

// RunscSetupEnv is the setup stage's own environment.
var RunscSetupEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// RunscSetupArgv returns the argv that runs the setup stage of self (the
// agent binary, as the sandbox sees it), which then execs argv with env.
// The process must be started with RunscSetupEnv.
func RunscSetupArgv(self string, s RunscSetup, env, argv []string) ([]string, error) {
	if s.UID == 0 || s.GID == 0 {
		return nil, errors.New("runsc setup: the sandbox user must not be root")
	}
	if len(argv) == 0 {
		return nil, errors.New("runsc setup: no command")
	}
	s.Envc = len(env)
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	out := append([]string{self, RunscSetupArg, string(b)}, env...)
	return append(out, argv...), nil
}
