package testworld

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// netnsDir is where named namespaces are bind-mounted, as `ip netns` expects.
const netnsDir = "/run/netns"

// linkUpTimeout bounds the wait for the veth to report carrier.
const linkUpTimeout = 5 * time.Second

// network is the world's namespace and the veth pair joining it to the host.
type network struct {
	name     string
	hostLink string         // "<name>h", in the host namespace
	ns       netns.NsHandle // open handle on the world namespace
}

// openNetwork creates the named namespace and a veth pair: the host end gets
// host and comes up, giving the host a connected route into the world; the
// world end gets the world addresses, and the world routes everything back to host.
// Leftovers of an earlier run with the same name are removed first.
func openNetwork(name string, host netip.Prefix, world []netip.Prefix) (_ *network, err error) {
	n := &network{name: name, hostLink: name + "h", ns: netns.None()}
	if err := n.removeStale(); err != nil {
		return nil, err
	}
	if err := checkPrefixFree(host); err != nil {
		return nil, err
	}

	defer func() {
		if err != nil {
			err = errors.Join(err, n.close())
		}
	}()
	if n.ns, err = newNamedNetns(name); err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", name, err)
	}

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: n.hostLink},
		PeerName:      name + "w",
		PeerNamespace: netlink.NsFd(n.ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", n.hostLink, err)
	}
	if err := configureLink(nil, n.hostLink, []netip.Prefix{host}); err != nil {
		return nil, err
	}

	if err := n.configureWorld(name+"w", host.Addr(), world); err != nil {
		return nil, err
	}
	return n, waitLinkUp(n.hostLink)
}

// configureWorld brings up lo and the world end of the veth, and adds the
// default route back to the host.
func (n *network) configureWorld(link string, gw netip.Addr, addrs []netip.Prefix) error {
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		return fmt.Errorf("open netlink in world %s: %w", n.name, err)
	}
	defer h.Close()

	if err := configureLink(h, "lo", nil); err != nil {
		return err
	}
	if err := configureLink(h, link, addrs); err != nil {
		return err
	}

	peer, err := h.LinkByName(link)
	if err != nil {
		return fmt.Errorf("find %s in world: %w", link, err)
	}
	route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := h.RouteAdd(route); err != nil {
		return fmt.Errorf("add default route via %s in world: %w", gw, err)
	}
	return nil
}

// configureLink adds addrs to the link called name and sets it up, through h
// or, when h is nil, in the caller's namespace.
func configureLink(h *netlink.Handle, name string, addrs []netip.Prefix) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	for _, p := range addrs {
		ipnet := &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), 32)}
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet}); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// waitLinkUp waits until the host end of the veth has carrier, so the first
// packet a test sends is not dropped.
func waitLinkUp(name string) error {
	deadline := time.Now().Add(linkUpTimeout)
	for {
		link, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("find link %s: %w", name, err)
		}
		if link.Attrs().OperState == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link %s still %s after %v", name, link.Attrs().OperState, linkUpTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkPrefixFree fails if a host address already falls inside p, which
// would mean another world (or something else) owns the subnet.
func checkPrefixFree(p netip.Prefix) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && p.Masked().Contains(ip) {
			return fmt.Errorf("world subnet %s overlaps host address %s on link index %d",
				p.Masked(), ip, a.LinkIndex)
		}
	}
	return nil
}

// do runs fn on a thread inside the world namespace. Sockets fn creates stay
// in the world after the thread switches back.
func (n *network) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter world %s: %w", n.name, err)
			return
		}

		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread is stuck in the world. Leaving it locked makes the
			// runtime end the thread with this goroutine instead of reusing it.
			errc <- errors.Join(fnErr, fmt.Errorf("leave world %s: %w", n.name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// newNamedNetns creates a namespace bind-mounted at /run/netns/name, so that
// `ip netns exec name` works for debugging, and returns a handle on it.
// netns.NewNamed moves the calling thread into the new namespace, so it runs
// on a locked thread that moves back afterwards.
func newNamedNetns(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			resc <- result{netns.None(), fmt.Errorf("get current network namespace: %w", err)}
			return
		}
		defer orig.Close()

		ns, err := netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			// See do: a thread that cannot leave stays locked and dies.
			resc <- result{ns, errors.Join(err, fmt.Errorf("return to host namespace: %w", serr))}
			return
		}
		runtime.UnlockOSThread()
		resc <- result{ns, err}
	}()
	res := <-resc
	return res.ns, res.err
}

// removeStale deletes a host veth and a namespace mount named like this
// world, left behind by a run that crashed before Close.
func (n *network) removeStale() error {
	if err := deleteLink(n.hostLink); err != nil {
		return fmt.Errorf("remove stale link: %w", err)
	}
	if err := deleteNamedNetns(n.name); err != nil {
		return fmt.Errorf("remove stale namespace: %w", err)
	}
	return nil
}

// close deletes the veth pair and the namespace. Things already gone are
// not errors.
func (n *network) close() error {
	// Deleting one end deletes the pair at once; the namespace itself is
	// torn down by the kernel asynchronously once its last reference goes.
	errs := []error{deleteLink(n.hostLink)}
	if n.ns.IsOpen() {
		errs = append(errs, n.ns.Close())
		n.ns = netns.None()
	}
	errs = append(errs, deleteNamedNetns(n.name))
	return errors.Join(errs...)
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// deleteNamedNetns unmounts and removes /run/netns/name. Unlike
// netns.DeleteNamed it also removes a mount point that a crashed run created
// but never mounted.
func deleteNamedNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	err := syscall.Unmount(path, syscall.MNT_DETACH)
	if err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}
