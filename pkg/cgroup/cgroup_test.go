//go:build linux

package cgroup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testutil"
)

func TestCreateKillRemove(t *testing.T) {
	testutil.RequireRoot(t)
	root, err := Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	g, err := Create(filepath.Join(root, "keygate-test", "cg1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(root, "keygate-test")) })

	fd, err := g.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	if pop, err := g.Populated(); err != nil || !pop {
		t.Fatalf("Populated = %v, %v; want true", pop, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("sleep exited cleanly; want killed")
	}
	if _, err := os.Stat(g.Path); !os.IsNotExist(err) {
		t.Fatalf("cgroup still exists: %v", err)
	}
}
