//go:build linux

package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
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

// RunRunscSetup is the setup stage's main function. It does not return:
// it execs the command, or exits 125 when the sandbox could not be set up
// (127 when the command is not found).
func RunRunscSetup() {
	code, err := runscSetup(os.Args[2:])
	fmt.Fprintf(os.Stderr, "keygate: sandbox setup: %v\n", err)
	os.Exit(code)
}

// runscSetup installs, drops privileges and execs args[1:]; it returns
// only on failure.
func runscSetup(args []string) (int, error) {
	// no_new_privs and the bounding set are per thread: they are set on,
	// and the command is exec'd from, this one.
	runtime.LockOSThread()
	if len(args) < 2 {
		return 125, errors.New("usage: " + RunscSetupArg + " SETUP-JSON COMMAND [ARG...]")
	}
	var s RunscSetup
	if err := json.Unmarshal([]byte(args[0]), &s); err != nil {
		return 125, fmt.Errorf("read setup: %w", err)
	}
	if s.UID == 0 || s.GID == 0 {
		return 125, errors.New("the sandbox user must not be root")
	}
	if s.Envc < 0 || len(args) < 2+s.Envc {
		return 125, errors.New("setup: environment or command missing")
	}
	env, argv := args[1:1+s.Envc], args[1+s.Envc:]
	for _, f := range s.Files {
		if err := f.install(); err != nil {
			return 125, err
		}
	}
	if err := leaveRoot(s.UID, s.GID); err != nil {
		return 125, err
	}
	path, err := lookPath(argv[0], env)
	if err != nil {
		return 127, fmt.Errorf("%s: %w", argv[0], err)
	}
	err = syscall.Exec(path, argv, env)
	return 126, fmt.Errorf("exec %s: %w", argv[0], err)
}

func (f FileCopy) install() error {
	data, err := os.ReadFile(f.Src)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.Src, err)
	}
	for _, dst := range f.Dst {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) && f.IfExists {
			continue
		}
		// Removed first, so that a link is replaced rather than followed
		// to wherever it points.
		if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	}
	return nil
}

// leaveRoot gives up root for good: no_new_privs and an empty capability
// bounding set, then the sandbox's user and group (becomeUser), which
// clears the permitted and effective capabilities. It checks that none is
// left.
func leaveRoot(uid, gid uint32) error {
	if err := dropPrivileges(); err != nil {
		return err
	}
	if err := becomeUser(uid, gid); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, d := range data {
		if d.Effective != 0 || d.Permitted != 0 || d.Inheritable != 0 {
			return errors.New("capabilities left after the user change")
		}
	}
	if os.Getuid() != int(uid) || os.Geteuid() != int(uid) || os.Getgid() != int(gid) {
		return errors.New("user change did not take")
	}
	return nil
}
