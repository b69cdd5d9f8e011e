//go:build linux

package netns

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/keygate/keygate/internal/testutil"
)

func TestCreateReachHostEnd(t *testing.T) {
	testutil.RequireRoot(t)
	cfg := Config{
		HostLink:    "kgtest0h",
		HostAddr:    netip.MustParsePrefix("10.233.255.1/30"),
		SandboxAddr: netip.MustParsePrefix("10.233.255.2/30"),
	}
	n, err := Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	// A listener on the host end, dialled from inside the sandbox.
	ln, err := net.Listen("tcp", "10.233.255.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()

	err = n.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
		if err != nil {
			return err
		}
		if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != "10.233.255.2" {
			t.Errorf("sandbox source address = %s, want 10.233.255.2", got)
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("dial host end from sandbox: %v", err)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(cfg.HostLink); err == nil {
		t.Fatal("host link still exists after Close")
	}
}
