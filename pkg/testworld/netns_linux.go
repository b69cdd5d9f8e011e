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
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/nlretry"
)

// netnsDir is where named namespaces are bind-mounted, as `ip netns` expects.
const netnsDir = "/run/netns"

// linkUpTimeout bounds the wait for the veth to report carrier and for its
// addresses to become usable.
const linkUpTimeout = 5 * time.Second

// network is the world's namespace and the veth pair joining it to the host.
type network struct {
	name      string
	hostLink  string         // "<name>h", in the host namespace
	worldLink string         // "<name>w", in the world namespace
	ns        netns.NsHandle // open handle on the world namespace
	hostIndex int            // index of hostLink, or 0 before it exists
	routes    []netip.Prefix // host routes into the world added so far
}

// openNetwork creates the named namespace and a veth pair: the host end gets
// plan.host and comes up, giving the host a connected route into the world
// for each family; the world end gets plan.world, and the world routes
// everything back to plan.gateways. Then the host routes plan.routes into
// the world. Leftovers of an earlier run with the same name are removed
// first.
func openNetwork(name string, plan netPlan) (_ *network, err error) {
	n := &network{name: name, hostLink: name + "h", worldLink: name + "w", ns: netns.None()}
	if err := n.removeStale(); err != nil {
		return nil, err
	}
	for _, p := range plan.host {
		if err := checkPrefixFree(p); err != nil {
			return nil, err
		}
	}
	// Checked now, too, so that a world whose stand-ins are taken fails
	// before it creates anything.
	for _, dst := range plan.routes {
		if _, err := n.routeHeld(dst); err != nil {
			return nil, err
		}
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
		PeerName:      n.worldLink,
		PeerNamespace: netlink.NsFd(n.ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", n.hostLink, err)
	}
	if err := n.configureHost(plan.host); err != nil {
		return nil, err
	}
	if err := n.configureWorld(plan.world, plan.gateways); err != nil {
		return nil, err
	}
	if err := waitLinkUp(n.hostLink); err != nil {
		return nil, err
	}
	if err := n.waitAddrsUsable(plan); err != nil {
		return nil, err
	}
	return n, n.addRoutes(plan.routes, plan.src)
}

// configureHost enables IPv6 on the host end if it gets IPv6 addresses, adds
// them and sets the link up.
func (n *network) configureHost(addrs []netip.Prefix) error {
	link, err := netlink.LinkByName(n.hostLink)
	if err != nil {
		return fmt.Errorf("find link %s: %w", n.hostLink, err)
	}
	n.hostIndex = link.Attrs().Index

	if hasIPv6(addrs) {
		if err := enableIPv6(n.hostLink); err != nil {
			return err
		}
	}
	return configureLink(nil, n.hostLink, addrs)
}

// configureWorld brings up lo and the world end of the veth, and adds a
// default route back to the host for each gateway.
func (n *network) configureWorld(addrs []netip.Prefix, gateways []netip.Addr) error {
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		return fmt.Errorf("open netlink in world %s: %w", n.name, err)
	}
	defer h.Close()

	if hasIPv6(addrs) {
		// The sysctl tree under /proc/sys/net belongs to the namespace of
		// the thread that opens it, so this must run inside the world.
		if err := n.do(func() error { return enableIPv6(n.worldLink) }); err != nil {
			return err
		}
	}
	if err := configureLink(h, "lo", nil); err != nil {
		return err
	}
	if err := configureLink(h, n.worldLink, addrs); err != nil {
		return err
	}

	peer, err := h.LinkByName(n.worldLink)
	if err != nil {
		return fmt.Errorf("find %s in world: %w", n.worldLink, err)
	}
	for _, gw := range gateways {
		route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("add default route via %s in world: %w", gw, err)
		}
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
		if err := h.AddrAdd(link, netlinkAddr(p)); err != nil {
			return fmt.Errorf("add %s to %s: %w", p, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// netlinkAddr converts p. IPv6 addresses skip duplicate address detection,
// which would otherwise keep them unusable (tentative) for about a second
// after the link comes up; nothing else on the veth can hold them.
func netlinkAddr(p netip.Prefix) *netlink.Addr {
	addr := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	return addr
}

func hasIPv6(addrs []netip.Prefix) bool {
	for _, p := range addrs {
		if p.Addr().Is6() {
			return true
		}
	}
	return false
}

// enableIPv6 clears disable_ipv6 on link, which a host may set by default for
// new interfaces, in the namespace of the calling thread.
func enableIPv6(link string) error {
	path := filepath.Join("/proc/sys/net/ipv6/conf", link, "disable_ipv6")
	if err := os.WriteFile(path, []byte("0"), 0o644); err != nil {
		return fmt.Errorf("enable IPv6 on %s (set Config.NoIPv6 to do without): %w", link, err)
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

// waitAddrsUsable waits until no IPv6 address of either veth end is still
// tentative. Even without duplicate address detection, the kernel keeps an
// address tentative until its link has carrier, and a socket cannot bind a
// tentative address.
func (n *network) waitAddrsUsable(plan netPlan) error {
	h, err := netlink.NewHandleAt(n.ns)
	if err != nil {
		return fmt.Errorf("open netlink in world %s: %w", n.name, err)
	}
	defer h.Close()

	if err := waitNotTentative(&netlink.Handle{}, n.hostLink, plan.host); err != nil {
		return err
	}
	return waitNotTentative(h, n.worldLink, plan.world)
}

func waitNotTentative(h *netlink.Handle, name string, want []netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	deadline := time.Now().Add(linkUpTimeout)
	for {
		pending, err := tentativeAddrs(h, link, want)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("addresses %v on %s not usable after %v", pending, name, linkUpTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tentativeAddrs returns the IPv6 addresses of want that link lacks or holds
// only tentatively.
func tentativeAddrs(h *netlink.Handle, link netlink.Link, want []netip.Prefix) ([]netip.Addr, error) {
	addrs, err := nlretry.Do(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V6) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	usable := make(map[netip.Addr]bool)
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
			usable[ip] = true
		}
	}
	var pending []netip.Addr
	for _, p := range want {
		if p.Addr().Is6() && !usable[p.Addr()] {
			pending = append(pending, p.Addr())
		}
	}
	return pending, nil
}

// checkPrefixFree fails if a host address already falls inside p, which
// would mean another world (or something else) owns the subnet.
func checkPrefixFree(p netip.Prefix) error {
	addrs, err := nlretry.Do(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if ok && p.Masked().Contains(ip.Unmap()) {
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
	// Deleting one end deletes the pair at once, and with it every route
	// through it; the routes go first anyway, so that a failure to delete
	// the link cannot leave the stand-ins routed. The namespace itself is
	// torn down by the kernel asynchronously once its last reference goes.
	errs := []error{n.deleteRoutes(), deleteLink(n.hostLink)}
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
