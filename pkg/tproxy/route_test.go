//go:build linux

package tproxy

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/testutil"
)

const (
	testMark  = 0x4b47
	testTable = 0x4b48
)

// policyState reports, for each family, how many rules send testMark to
// testTable and whether testTable has its local default route.
func policyState(t *testing.T, ns netns.NsHandle) map[string][2]int {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out := map[string][2]int{}
	for name, family := range map[string]int{"v4": netlink.FAMILY_V4, "v6": netlink.FAMILY_V6} {
		rules, err := h.RuleListFiltered(family, &netlink.Rule{Table: testTable},
			netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		var st [2]int
		for _, r := range rules {
			if r.Mark == testMark && r.Priority == RulePriority {
				st[0]++
			}
		}
		routes, err := h.RouteListFiltered(family, &netlink.Route{Table: testTable},
			netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if ones, _ := dstMask(r.Dst); ones == 0 && r.Type == unix.RTN_LOCAL {
				st[1]++
			}
		}
		out[name] = st
	}
	return out
}

// TestInstall installs the policy routing twice in a fresh namespace,
// checks what a marked packet's route is, and undoes it.
func TestInstall(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)

	var undo1, undo2 func() error
	var err1, err2 error
	testutil.InNetNS(t, ns, func() {
		undo1, err1 = Install(testMark, testTable)
		if err1 == nil {
			// Idempotent: the second reuses what the first put there.
			undo2, err2 = Install(testMark, testTable)
		}
	})
	if err1 != nil || err2 != nil {
		t.Fatalf("Install: %v, again: %v", err1, err2)
	}
	want := map[string][2]int{"v4": {1, 1}, "v6": {1, 1}}
	if got := policyState(t, ns); got["v4"] != want["v4"] || got["v6"] != want["v6"] {
		t.Errorf("rules and routes = %v, want %v", got, want)
	}

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, dst := range []string{"198.51.100.9", "2001:db8::9"} {
		for _, mark := range []uint32{testMark, 0} {
			opts := &netlink.RouteGetOptions{Mark: mark}
			routes, err := h.RouteGetWithOptions(net.ParseIP(dst), opts)
			local := err == nil && len(routes) == 1 && routes[0].Type == unix.RTN_LOCAL
			if local != (mark == testMark) {
				t.Errorf("route to %s with mark %#x: %v, %v; want local only when marked",
					dst, mark, routes, err)
			}
		}
	}

	if err := undo1(); err != nil {
		t.Fatal(err)
	}
	if err := undo2(); err != nil {
		t.Errorf("second undo: %v", err)
	}
	if err := undo1(); err != nil {
		t.Errorf("undo again: %v", err)
	}
	if got := policyState(t, ns); got["v4"] != [2]int{} || got["v6"] != [2]int{} {
		t.Errorf("after undo: rules and routes = %v, want none", got)
	}
}

// TestInstallConflict checks that a table someone else uses is refused,
// and that the refusal leaves nothing behind.
func TestInstallConflict(t *testing.T) {
	testutil.RequireRoot(t)
	ns := testutil.NewNetNS(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	other := &netlink.Route{
		Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Table: testTable,
		Type: unix.RTN_BLACKHOLE,
	}
	if err := h.RouteAdd(other); err != nil {
		t.Fatal(err)
	}

	var err1 error
	testutil.InNetNS(t, ns, func() { _, err1 = Install(testMark, testTable) })
	if err1 == nil {
		t.Fatal("Install over a foreign default route succeeded")
	}
	t.Log(err1)
	if got := policyState(t, ns); got["v4"] != [2]int{} || got["v6"] != [2]int{} {
		t.Errorf("after a failed Install: rules and routes = %v, want none", got)
	}

	for _, table := range []uint32{0, unix.RT_TABLE_MAIN, unix.RT_TABLE_LOCAL} {
		if _, err := Install(testMark, table); err == nil {
			t.Errorf("Install with table %d succeeded", table)
		}
	}
	if _, err := Install(0, testTable); err == nil {
		t.Error("Install with mark 0 succeeded")
	}
}
