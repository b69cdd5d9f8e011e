//go:build linux

package bpf

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/keygate/keygate/internal/testutil"
)

// testPinDir returns a fresh pin directory name below /sys/fs/bpf, removed
// when t ends if the test left it behind.
func testPinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(bpffsRoot, randName("keygate-bpftest-"))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// cgroupProgs returns the IDs of the programs attached directly to the
// cgroup at path, by attach type.
func cgroupProgs(t *testing.T, path string,
	types []ebpf.AttachType) map[ebpf.AttachType][]ebpf.ProgramID {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := make(map[ebpf.AttachType][]ebpf.ProgramID)
	for _, typ := range types {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: typ})
		if err != nil {
			t.Fatalf("query %s programs: %v", typ, err)
		}
		for _, p := range res.Programs {
			out[typ] = append(out[typ], p.ID)
		}
	}
	return out
}

// progIDs returns the IDs of c's programs by attach type.
func (c *CgroupCapture) progIDs(t *testing.T) map[ebpf.AttachType][]ebpf.ProgramID {
	t.Helper()
	out := make(map[ebpf.AttachType][]ebpf.ProgramID)
	for _, h := range c.hooks() {
		info, err := h.prog.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		out[h.typ] = []ebpf.ProgramID{id}
	}
	return out
}

func attachTypes(c *CgroupCapture) []ebpf.AttachType {
	var types []ebpf.AttachType
	for _, h := range c.hooks() {
		types = append(types, h.typ)
	}
	return types
}

func sameProgs(a, b map[ebpf.AttachType][]ebpf.ProgramID) bool {
	if len(a) != len(b) {
		return false
	}
	for typ, ids := range a {
		if !slices.Equal(ids, b[typ]) {
			return false
		}
	}
	return true
}

// TestPinnedCapture checks that pinned capture outlives the agent that
// attached it, that the next agent takes it over in place, and that Unpin
// leaves nothing behind.
func TestPinnedCapture(t *testing.T) {
	testutil.RequireRoot(t)
	ns := newServiceNetNS(t)
	parent, child := testCgroups(t)
	cfg := testCgroupConfig
	cfg.PinDir = testPinDir(t)

	// The proxy: records each peer and answers the child.
	peers := make(chan netip.AddrPort, 1)
	ln := listen(t, ns, "tcp4", cfg.Proxy.String())
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(conn).ReadString('\n')
			conn.Write([]byte("ok\n"))
			peers <- conn.RemoteAddr().(*net.TCPAddr).AddrPort()
			conn.Close()
		}
	}()

	// A first agent attaches and goes away.
	first, err := LoadCgroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	types := attachTypes(first)
	firstIDs := first.progIDs(t)
	if err := first.Attach(parent); err != nil {
		first.Close()
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := cgroupProgs(t, parent, types); !sameProgs(got, firstIDs) {
		t.Fatalf("after Close: attached %v, want the first agent's %v", got, firstIDs)
	}

	// Capture is still in force.
	res := parseChild(t, runChild(t, ns, child, childConnect))["tcp4"]
	if res.Err != "" || res.Peer != "198.51.100.7:443" {
		t.Fatalf("connect with no agent: %+v", res)
	}
	peer := <-peers

	// A second agent takes over: updated in place, not attached twice.
	second, err := LoadCgroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	if err := second.Attach(parent); err != nil {
		t.Fatal(err)
	}
	secondIDs := second.progIDs(t)
	if got := cgroupProgs(t, parent, types); !sameProgs(got, secondIDs) {
		t.Fatalf("after takeover: attached %v, want the second agent's %v", got, secondIDs)
	}

	// The maps were reused: what the first agent's programs recorded is
	// there for the second.
	od, err := second.TakeConn(peer)
	if err != nil || od.Dst != netip.MustParseAddrPort("198.51.100.7:443") {
		t.Errorf("TakeConn(%s) after takeover = %+v, %v", peer, od, err)
	}
	n, err := second.Counters()
	if err != nil || n["tcp_redirect"] != 1 {
		t.Errorf("tcp_redirect after takeover = %d, %v; want 1", n["tcp_redirect"], err)
	}

	if err := second.Unpin(); err != nil {
		t.Fatal(err)
	}
	if got := cgroupProgs(t, parent, types); len(got) != 0 {
		t.Errorf("after Unpin: attached %v, want nothing", got)
	}
	if _, err := os.Stat(cfg.PinDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Unpin: pin directory: %v, want it gone", err)
	}
}

// TestPinnedMapReplaced checks that a pinned map this version cannot use
// is replaced rather than failing the load.
func TestPinnedMapReplaced(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := testCgroupConfig
	cfg.PinDir = testPinDir(t)
	if err := preparePinDir(cfg.PinDir); err != nil {
		t.Fatal(err)
	}

	// counters as an older version with fewer reasons would have left it.
	old, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: "counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(cfg.PinDir, "counters")); err != nil {
		t.Fatal(err)
	}

	c, err := LoadCgroup(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer c.Unpin()

	pinned, err := ebpf.LoadPinnedMap(filepath.Join(cfg.PinDir, "counters"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if got := pinned.MaxEntries(); got != uint32(len(reasonNames)) {
		t.Errorf("pinned counters has %d entries, want %d", got, len(reasonNames))
	}
	if _, err := c.Counters(); err != nil {
		t.Error(err)
	}
}
