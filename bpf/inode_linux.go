//go:build linux

package bpf

import (
	"fmt"
	"io/fs"
	"syscall"
)

func inode(fi fs.FileInfo) (uint64, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no inode number", fi.Name())
	}
	return st.Ino, nil
}
