package etcdtest

import "syscall"

// procAttr puts a member in a process group of its own, so a signal to the
// test's group (^C) does not reach it before the cleanup does, and has the
// kernel kill it if the test process dies without cleaning up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
