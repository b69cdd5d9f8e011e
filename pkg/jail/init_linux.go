//go:build linux

package jail

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// specFD is the descriptor the agent passes the Spec on (ExtraFiles[0]).
const specFD = 3

// RunInit is the sandbox init's main function. It never returns: it exits
// with the command's status, or 125 when the sandbox could not be set up.
func RunInit() {
	var exitFile *os.File
	code, err := runInit(&exitFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "keygate: sandbox setup: %v\n", err)
		code = 125
	}
	if exitFile != nil {
		fmt.Fprintf(exitFile, "exit %d\n", code)
		exitFile.Sync()
	}
	os.Exit(code)
}

func runInit(exitFile **os.File) (int, error) {
	// Privilege changes below are per thread; the command is forked from
	// this thread so it inherits them.
	runtime.LockOSThread()

	f := os.NewFile(specFD, "spec")
	var spec Spec
	if err := json.NewDecoder(f).Decode(&spec); err != nil {
		return 0, fmt.Errorf("read spec: %w", err)
	}
	f.Close()
	if spec.ExitFD != 0 {
		*exitFile = os.NewFile(uintptr(spec.ExitFD), "exit")
	}
	if err := spec.Validate(); err != nil {
		return 0, err
	}

	if err := setupMounts(&spec); err != nil {
		return 0, err
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		return 0, fmt.Errorf("set hostname: %w", err)
	}
	if err := dropPrivileges(); err != nil {
		return 0, err
	}
	if spec.Persistent {
		return waitForStop()
	}
	return runCommand(&spec)
}

// waitForStop is the life of a persistent sandbox's init: reap whatever
// exits until SIGTERM or SIGINT, then end every process of the sandbox (by
// exiting: the kernel kills the rest of a pid namespace with its init).
func waitForStop() (int, error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	go func() {
		for {
			var ws unix.WaitStatus
			if _, err := unix.Wait4(-1, &ws, 0, nil); errors.Is(err, unix.ECHILD) {
				time.Sleep(100 * time.Millisecond) // nothing to reap yet
			}
		}
	}()
	<-sigs
	return 0, nil
}

// setupMounts builds the sandbox's file system view in its private mount
// namespace: the host's tree read-only and nosuid, keygate's own files
// hidden, fresh proc and sysfs for the sandbox's pid and net namespaces,
// and private writable /tmp, /var/tmp, /dev/shm and home.
func setupMounts(spec *Spec) error {
	// Nothing done here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	for _, b := range spec.Binds {
		if err := bindReadOnly(b.Src, b.Dst); err != nil {
			return err
		}
	}
	for _, p := range spec.Hide {
		if err := hide(p); err != nil {
			return err
		}
	}

	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}
	if err := unix.MountSetattr(-1, "/", unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make / read-only: %w", err)
	}

	const flags = unix.MS_NOSUID | unix.MS_NODEV
	mounts := []struct {
		src, dst, fstype, data string
		flags                  uintptr
	}{
		// hidepid=invisible: the sandbox user does not even see this init.
		{"proc", "/proc", "proc", "hidepid=invisible", flags | unix.MS_NOEXEC},
		{"sysfs", "/sys", "sysfs", "", flags | unix.MS_NOEXEC | unix.MS_RDONLY},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777,size=50%", flags},
		{"tmpfs", "/var/tmp", "tmpfs", "mode=1777,size=50%", flags},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777,size=50%", flags},
		{"tmpfs", filepath.Dir(spec.Home), "tmpfs", "mode=0755,size=50%", flags},
	}
	for _, m := range mounts {
		if _, err := os.Stat(m.dst); err != nil {
			continue // not every host has /var/tmp or /dev/shm
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}

	if err := os.Mkdir(spec.Home, 0o700); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	if err := os.Chown(spec.Home, int(spec.UID), int(spec.GID)); err != nil {
		return fmt.Errorf("chown home: %w", err)
	}
	return nil
}

func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	const ro = unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID
	if err := unix.Mount("", dst, "", ro, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", dst, err)
	}
	return nil
}

// hide covers path with an empty, read-only tmpfs (a directory) or with
// /dev/null (a file). A path that does not exist needs no hiding.
func hide(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hide %s: %w", path, err)
	}
	if !fi.IsDir() {
		return bindReadOnly("/dev/null", path)
	}
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("tmpfs", path, "tmpfs", flags, "mode=0755,size=4k"); err != nil {
		return fmt.Errorf("hide %s: %w", path, err)
	}
	return nil
}

// dropPrivileges makes sure nothing the command runs can regain
// privileges: no_new_privs, and an empty capability bounding set. The user
// change itself happens when the command is forked.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	return nil
}

// runCommand starts the command as the sandbox user, forwards termination
// signals to it, reaps every orphan (this process is PID 1 of the
// sandbox's pid namespace) and returns the command's exit status.
func runCommand(spec *Spec) (int, error) {
	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return 127, fmt.Errorf("%s: %w", spec.Argv[0], err)
	}
	dir := spec.Dir
	if dir == "" || unix.Access(dir, unix.X_OK) != nil {
		dir = spec.Home
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)

	pid, err := syscall.ForkExec(path, spec.Argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: []uint32{}},
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	if err != nil {
		return 126, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	go func() {
		for s := range sigs {
			syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	return reap(pid)
}

func reap(main int) (int, error) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("wait: %w", err)
		}
		if pid != main {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus(), nil
		case ws.Signaled():
			return 128 + int(ws.Signal()), nil
		}
	}
}

// lookPath resolves name against the PATH in env, not the agent's own.
func lookPath(name string, env []string) (string, error) {
	if filepath.Base(name) != name {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := cutEnv(kv, "PATH"); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func cutEnv(kv, key string) (string, bool) {
	if len(kv) > len(key) && kv[:len(key)] == key && kv[len(key)] == '=' {
		return kv[len(key)+1:], true
	}
	return "", false
}
