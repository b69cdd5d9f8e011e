//go:build linux

// Package netns creates a sandbox's network: a fresh network namespace
// joined to the host by a veth pair, with one address and one route inside.
// The host end is the sandbox's only neighbour; the host does not forward
// what arrives on it, so traffic the agent does not accept goes nowhere.
package netns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config describes one sandbox network.
type Config struct {
	HostLink    string       // name of the veth end left in the host namespace
	HostAddr    netip.Prefix // address of the host end, e.g. 10.233.0.5/30
	SandboxAddr netip.Prefix // address of the sandbox end (eth0), same subnet
	// HostAddr6 and SandboxAddr6 are the IPv6 addresses of the two ends,
	// in one subnet; both zero = no IPv6 (the host end's IPv6 is then off).
	HostAddr6, SandboxAddr6 netip.Prefix
	// Pin, if set, is a file path the namespace is bind-mounted on, so it
	// can be opened again (Open) by an agent that restarted, or by a
	// runtime that takes a namespace path. "" = no pin.
	Pin string
	// Owner, if set, is written as the host link's alias (ifalias) so an
	// agent can tell its own links from those of other agents on the host.
	Owner string
}

func (c Config) validate() error {
	if c.HostLink == "" || len(c.HostLink) > 15 {
		return fmt.Errorf("host link name %q: need 1-15 characters", c.HostLink)
	}
	if !c.HostAddr.Addr().Is4() || !c.SandboxAddr.Addr().Is4() {
		return fmt.Errorf("addresses %s, %s: need IPv4", c.HostAddr, c.SandboxAddr)
	}
	if c.HostAddr.Masked() != c.SandboxAddr.Masked() {
		return fmt.Errorf("addresses %s, %s: not in one subnet", c.HostAddr, c.SandboxAddr)
	}
	if c.HostAddr6.IsValid() != c.SandboxAddr6.IsValid() {
		return fmt.Errorf("IPv6 addresses %s, %s: give both or neither", c.HostAddr6, c.SandboxAddr6)
	}
	if c.HostAddr6.IsValid() && (!c.HostAddr6.Addr().Is6() || c.HostAddr6.Masked() != c.SandboxAddr6.Masked()) {
		return fmt.Errorf("IPv6 addresses %s, %s: need IPv6 in one subnet", c.HostAddr6, c.SandboxAddr6)
	}
	return nil
}

// Net is a sandbox's network namespace and the host end of its veth.
type Net struct {
	NS  vnetns.NsHandle // open handle on the namespace; closed by Close
	cfg Config
}

// Path returns the file the namespace is pinned on, or "".
func (n *Net) Path() string { return n.cfg.Pin }

// HostIndex returns the interface index of the veth's host end.
func (n *Net) HostIndex() (int, error) {
	link, err := netlink.LinkByName(n.cfg.HostLink)
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", n.cfg.HostLink, err)
	}
	return link.Attrs().Index, nil
}

// Open returns the Net of an existing sandbox whose namespace was pinned
// at cfg.Pin by Create; its host link must still exist.
func Open(cfg Config) (*Net, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Pin == "" {
		return nil, errors.New("open netns: no pin path")
	}
	if _, err := netlink.LinkByName(cfg.HostLink); err != nil {
		return nil, fmt.Errorf("open netns: host link %s: %w", cfg.HostLink, err)
	}
	ns, err := vnetns.GetFromPath(cfg.Pin)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", cfg.Pin, err)
	}
	return &Net{NS: ns, cfg: cfg}, nil
}

// Remove deletes what Create left for a sandbox network that can no
// longer be opened: the host link and the pin. Missing parts are fine.
func Remove(cfg Config) error {
	n := &Net{cfg: cfg}
	return n.Close()
}

// Create makes the namespace and the veth pair and configures both ends. On
// error nothing is left behind.
func Create(cfg Config) (n *Net, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ns, err := newNamespace()
	if err != nil {
		return nil, err
	}
	n = &Net{NS: ns, cfg: cfg}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: cfg.HostLink, Alias: cfg.Owner},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", cfg.HostLink, err)
	}
	if err := configureHostEnd(cfg); err != nil {
		return nil, err
	}
	if err := configureSandboxEnd(ns, cfg); err != nil {
		return nil, err
	}
	if cfg.Pin != "" {
		if err := pin(ns, cfg.Pin); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// pin bind-mounts the namespace on path, as `ip netns add` does, so that it
// can be found by path and lives as long as the mount.
func pin(ns vnetns.NsHandle, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pin netns: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("pin netns: %w", err)
	}
	f.Close()
	src := fmt.Sprintf("/proc/self/fd/%d", int(ns))
	if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin netns on %s: %w", path, err)
	}
	return nil
}

// unpin undoes pin; a path that is not pinned is only removed.
func unpin(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	return nil
}

// newNamespace creates a network namespace without moving the caller into
// it: the creating thread is switched back, or never returned to the
// scheduler if switching back fails.
func newNamespace() (vnetns.NsHandle, error) {
	type result struct {
		ns  vnetns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := vnetns.Get()
		if err != nil {
			ch <- result{err: fmt.Errorf("get current netns: %w", err)}
			return // the thread exits with its goroutine
		}
		defer origin.Close()
		ns, err := vnetns.New()
		if err != nil {
			ch <- result{err: fmt.Errorf("create netns: %w", err)}
			return
		}
		if err := vnetns.Set(origin); err != nil {
			ns.Close()
			ch <- result{err: fmt.Errorf("return to host netns: %w", err)}
			return // leave the thread locked: it dies instead of being reused
		}
		runtime.UnlockOSThread()
		ch <- result{ns: ns}
	}()
	r := <-ch
	return r.ns, r.err
}

func configureHostEnd(cfg Config) error {
	// No forwarding for packets arriving from the sandbox, strict
	// reverse-path filtering so it cannot use another sandbox's address,
	// and no IPv6 on the host end at all.
	disable6 := "1"
	if cfg.HostAddr6.IsValid() {
		disable6 = "0"
	}
	sysctls := map[string]string{
		"ipv4/conf/" + cfg.HostLink + "/forwarding":   "0",
		"ipv4/conf/" + cfg.HostLink + "/rp_filter":    "1",
		"ipv4/conf/" + cfg.HostLink + "/accept_local": "0",
		"ipv6/conf/" + cfg.HostLink + "/disable_ipv6": disable6,
		// IPv6 forwarding is decided by the global setting, not per
		// interface; the veth guard program is what stops a sandbox's
		// packets from being forwarded on a host that forwards IPv6.
		"ipv6/conf/" + cfg.HostLink + "/accept_ra": "0",
	}
	for key, val := range sysctls {
		if err := writeSysctl(key, val); err != nil {
			return err
		}
	}

	link, err := netlink.LinkByName(cfg.HostLink)
	if err != nil {
		return fmt.Errorf("find %s: %w", cfg.HostLink, err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(cfg.HostAddr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", cfg.HostAddr, cfg.HostLink, err)
	}
	if cfg.HostAddr6.IsValid() {
		a := &netlink.Addr{IPNet: ipNet(cfg.HostAddr6), Flags: unix.IFA_F_NODAD}
		if err := netlink.AddrAdd(link, a); err != nil {
			return fmt.Errorf("address %s on %s: %w", cfg.HostAddr6, cfg.HostLink, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring up %s: %w", cfg.HostLink, err)
	}
	return nil
}

func configureSandboxEnd(ns vnetns.NsHandle, cfg Config) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in sandbox netns: %w", err)
	}
	defer h.Close()

	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(cfg.SandboxAddr)}); err != nil {
		return fmt.Errorf("address %s on eth0: %w", cfg.SandboxAddr, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	// The only route out is to the host end of the veth.
	gw := net.IP(cfg.HostAddr.Addr().AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	if cfg.SandboxAddr6.IsValid() {
		return configureSandbox6(h, eth, cfg)
	}
	return nil
}

// configureSandbox6 gives eth0 its IPv6 address (without duplicate address
// detection, so it is usable at once) and a default route to the host end.
func configureSandbox6(h *netlink.Handle, eth netlink.Link, cfg Config) error {
	a := &netlink.Addr{IPNet: ipNet(cfg.SandboxAddr6), Flags: unix.IFA_F_NODAD}
	if err := h.AddrAdd(eth, a); err != nil {
		return fmt.Errorf("address %s on eth0: %w", cfg.SandboxAddr6, err)
	}
	gw := net.IP(cfg.HostAddr6.Addr().AsSlice())
	dflt := &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dflt, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// Close deletes the veth pair and releases the namespace handle; the
// namespace itself goes away with its last process.
func (n *Net) Close() error {
	var errs []error
	if link, err := netlink.LinkByName(n.cfg.HostLink); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", n.cfg.HostLink, err))
		}
	}
	if n.NS.IsOpen() {
		errs = append(errs, n.NS.Close())
	}
	if n.cfg.Pin != "" {
		errs = append(errs, unpin(n.cfg.Pin))
	}
	return errors.Join(errs...)
}

// Do runs fn on an OS thread that has joined the sandbox's namespace. Sockets
// fn creates belong to the sandbox's network; processes it starts from that
// thread (os/exec) begin in it.
func (n *Net) Do(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		origin, err := vnetns.Get()
		if err != nil {
			ch <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer origin.Close()
		if err := vnetns.Set(n.NS); err != nil {
			ch <- fmt.Errorf("enter sandbox netns: %w", err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(origin); err != nil {
			ch <- errors.Join(ferr, fmt.Errorf("return to host netns: %w", err))
			return // the thread stays locked and exits with the goroutine
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}

func writeSysctl(key, val string) error {
	path := filepath.Join("/proc/sys/net", key)
	if err := os.WriteFile(path, []byte(val), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
