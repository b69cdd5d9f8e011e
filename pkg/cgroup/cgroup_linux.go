//go:build linux

// Package cgroup finds the cgroup v2 hierarchy and manages the per-sandbox
// cgroups keygate creates below its own parent.
package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoCgroup2 is returned when no cgroup v2 hierarchy is mounted.
var ErrNoCgroup2 = errors.New("no cgroup v2 hierarchy mounted")

// Mountpoint returns where the cgroup v2 hierarchy is mounted, read from
// /proc/self/mounts: /sys/fs/cgroup on unified hosts, often
// /sys/fs/cgroup/unified on hybrid ones.
func Mountpoint() (string, error) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return "", err
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return fields[1], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	return "", ErrNoCgroup2
}

// Group is one cgroup v2 directory.
type Group struct {
	Path string
}

// Create makes the cgroup at path (and its parents). An existing directory
// is reused.
func Create(path string) (*Group, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	return &Group{Path: path}, nil
}

// Open returns the cgroup directory opened for use with CLONE_INTO_CGROUP.
func (g *Group) Open() (*os.File, error) {
	return os.OpenFile(g.Path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
}

// Kill sends SIGKILL to every process in the cgroup and its descendants.
// Requires cgroup.kill (Linux 5.14).
func (g *Group) Kill() error {
	err := os.WriteFile(filepath.Join(g.Path, "cgroup.kill"), []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill cgroup %s: %w", g.Path, err)
	}
	return nil
}

// Populated reports whether any process is left in the cgroup or below it.
func (g *Group) Populated() (bool, error) {
	b, err := os.ReadFile(filepath.Join(g.Path, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return v == "1", nil
		}
	}
	return false, fmt.Errorf("cgroup %s: no populated field in cgroup.events", g.Path)
}

// Remove kills whatever still runs in the cgroup, waits for it to empty and
// removes the directory. A cgroup that is already gone is not an error.
func (g *Group) Remove(ctx context.Context) error {
	if _, err := os.Stat(g.Path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := g.Kill(); err != nil {
		return err
	}
	for {
		err := unix.Rmdir(g.Path)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove cgroup %s: %w", g.Path, err)
		}
		// EBUSY: killed processes have not exited yet.
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove cgroup %s: %w", g.Path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
