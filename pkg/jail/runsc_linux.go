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
