//go:build !linux

package etcdtest

import "syscall"

// procAttr puts a member in a process group of its own, so a signal to the
// test's group (^C) does not reach it before the cleanup does.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
