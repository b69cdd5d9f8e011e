//go:build linux

package e2e

import (
	"bytes"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/keygate/keygate/internal/nlretry"
	"github.com/keygate/keygate/pkg/testworld"
)

// attackerSaw reports whether anything the attacker host received — HTTP
// requests of any kind, UDP datagrams, raw TCP bytes — contains s.
func attackerSaw(w *testworld.World, s string) bool {
	for _, r := range w.Requests(w.AttackerHost()) {
		if strings.Contains(r.Path, s) || bytes.Contains(r.Body, []byte(s)) {
			return true
		}
		for _, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, s) {
					return true
				}
			}
		}
	}
	for _, d := range w.Datagrams() {
		if bytes.Contains(d.Payload, []byte(s)) {
			return true
		}
	}
	return false
}

// assertNoResidue checks that a stopped agent left nothing behind: no
// sandbox links, no cgroups, no service address, no socket.
func assertNoResidue(t *testing.T, a *agent) {
	t.Helper()
	links, err := nlretry.Do(netlink.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if ours(l) {
			t.Errorf("sandbox link %s left behind", l.Attrs().Name)
		}
	}
	if _, err := os.Stat(a.cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind (stat: %v)", a.cgroup, err)
	}
	if _, err := os.Stat(a.socket); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind", a.socket)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := netlink.AddrList(lo, netlink.FAMILY_V4)
	for _, ad := range addrs {
		if strings.HasPrefix(ad.IP.String(), "10.235.") {
			t.Errorf("service address %s left on lo", ad.IP)
		}
	}
}

// redact hides secret in s, for failure messages.
func redact(s, secret string) string {
	return strings.ReplaceAll(s, secret, "[SECRET]")
}

// ours reports whether l is the host end of a sandbox veth of an agent
// under test: other keygated processes on the host (a benchmark, say) use
// the same names but other address ranges.
func ours(l netlink.Link) bool {
	if !strings.HasPrefix(l.Attrs().Name, "kg-") {
		return false
	}
	addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
	for _, a := range addrs {
		if testSandboxes.Contains(netip.AddrFrom4([4]byte(a.IP.To4()))) {
			return true
		}
	}
	return len(addrs) == 0 // a half-made link is anybody's leak
}

// testSandboxes is the tests' --sandbox-cidr.
var testSandboxes = netip.MustParsePrefix("10.235.0.0/16")
