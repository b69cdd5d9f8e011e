//go:build linux

package bpf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/testutil"
	"github.com/keygate/keygate/pkg/cgroup"
)

// randName returns prefix followed by six random hex digits.
func randName(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// addAddr puts cidr on the interface ifname in ns, without duplicate
// address detection.
func addAddr(t *testing.T, ns netns.NsHandle, ifname, cidr string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, ifname, err)
	}
}

// newServiceNetNS returns a network namespace with the test service
// addresses on its loopback.
func newServiceNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	ns := testutil.NewNetNS(t)
	addAddr(t, ns, "lo", testService4+"/32")
	addAddr(t, ns, "lo", testService6+"/128")
	return ns
}

// testCgroups creates a fresh cgroup v2 parent, keygate-bpftest-*, with
// one child for the sandbox processes, and removes both when t ends.
func testCgroups(t *testing.T) (parent, child string) {
	t.Helper()
	mnt, err := cgroup.Mountpoint()
	if err != nil {
		t.Fatal(err)
	}
	parent = filepath.Join(mnt, randName("keygate-bpftest-"))
	child = filepath.Join(parent, "sandbox")
	if _, err := cgroup.Create(child); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, p := range []string{child, parent} {
			if err := (&cgroup.Group{Path: p}).Remove(ctx); err != nil {
				t.Errorf("remove cgroup: %v", err)
			}
		}
	})
	return parent, child
}

// childModeEnv tells the test binary to run as a child (see TestMain).
const childModeEnv = "KEYGATE_BPFTEST_CHILD"

// runChild runs the test binary as a child in mode, in the cgroup at
// cgroupPath and the network namespace ns, and returns its standard output.
func runChild(t *testing.T, ns netns.NsHandle, cgroupPath, mode string, env ...string) []byte {
	t.Helper()
	cg, err := (&cgroup.Group{Path: cgroupPath}).Open()
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	nsFD, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(nsFD), "netns")
	defer nsFile.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), append(env, childModeEnv+"="+mode)...)
	cmd.ExtraFiles = []*os.File{nsFile} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s: %v", mode, err)
	}
	return out
}

// listen opens a TCP listener in ns.
func listen(t *testing.T, ns netns.NsHandle, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	testutil.InNetNS(t, ns, func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// listenUDP opens a UDP socket in ns.
func listenUDP(t *testing.T, ns netns.NsHandle, network, addr string) *net.UDPConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	testutil.InNetNS(t, ns, func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}
