package testutil

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NewNetNS creates a network namespace with its loopback up, closed when t
// ends, so that a test can bind, route and attach programs without touching
// the host's network.
func NewNetNS(t testing.TB) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	done := make(chan error, 1)
	go func() {
		// netns.New moves this thread into the new namespace; it stays
		// locked, so it ends with the goroutine and never runs other code.
		runtime.LockOSThread()
		var err error
		ns, err = netns.New()
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })

	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

// InNetNS runs fn on this goroutine's thread, moved into ns for the while.
// Sockets fn opens stay in ns.
func InNetNS(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter netns: %v", err)
	}
	// Deferred, so that it also runs when fn calls t.Fatal.
	defer func() {
		if err := netns.Set(orig); err != nil {
			t.Errorf("leave netns: %v", err) // the thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}
