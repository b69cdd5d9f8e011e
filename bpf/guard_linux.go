//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// guardPinPrefix starts the file name of each guard link in PinDir.
const guardPinPrefix = "guard-"

// Guard holds the loaded veth guard program and the veths it guards.
//
// The guard attaches at the tail of each veth's tcx ingress chain and
// passes with TCX_NEXT, so a program that must act on a sandbox's packets
// first attaches before it and ends the chain for what it handles. The
// steering program of the tc capture mode, loaded with the guard, is such
// a program: see GuardVeth.Mode and SetSteerSockets.
type Guard struct {
	spec   *ebpf.CollectionSpec // what was loaded; names the pinned maps
	objs   guardObjects
	pinDir string // GuardConfig.PinDir

	mu     sync.Mutex
	links  map[int]link.Link // guards by host-end ifindex; guarded by mu
	steers map[int]link.Link // steering programs, likewise; guarded by mu
}

// LoadGuard loads the veth guard program, with cfg's service addresses
// compiled in. Nothing is attached until Attach.
//
// With cfg.PinDir set, the guard's maps are pinned there (an incompatible
// map pinned by an older version is replaced, see LoadCgroup), and the
// guard links an earlier agent pinned are taken over: Attach and Detach
// work on them as on this guard's own. Pins of links whose veth has gone
// are removed, and so are the addresses of veths no link guards.
func LoadGuard(cfg GuardConfig) (*Guard, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	spec, err := loadGuard()
	if err != nil {
		return nil, err
	}
	if err := setGuardConsts(spec, cfg); err != nil {
		return nil, err
	}

	var opts ebpf.CollectionOptions
	if cfg.PinDir != "" {
		if err := preparePinDir(cfg.PinDir); err != nil {
			return nil, err
		}
		if _, err := dropIncompatiblePins(spec, cfg.PinDir); err != nil {
			return nil, err
		}
		opts.Maps.PinPath = cfg.PinDir
	} else {
		unpinNone(spec)
	}

	g := &Guard{
		spec: spec, pinDir: cfg.PinDir,
		links: make(map[int]link.Link), steers: make(map[int]link.Link),
	}
	if err := spec.LoadAndAssign(&g.objs, &opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load guard program: %+v", verr)
		}
		return nil, fmt.Errorf("load guard program: %w", kernelErr(err))
	}
	if cfg.PinDir != "" {
		if err := g.adoptPinned(); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

func setGuardConsts(spec *ebpf.CollectionSpec, cfg GuardConfig) error {
	consts := map[string]any{}
	if cfg.Service4.IsValid() {
		consts[guardVarServiceIp4] = ip4Word(cfg.Service4)
		consts[guardVarHaveService4] = uint8(1)
	}
	if cfg.Service6.IsValid() {
		consts[guardVarServiceIp6] = ip6Words(cfg.Service6)
		consts[guardVarHaveService6] = uint8(1)
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// adoptPinned takes over the guard and steering links pinned in PinDir,
// removes those whose veth was deleted, and forgets the configuration of
// every veth left without a guard.
func (g *Guard) adoptPinned() error {
	if err := g.adoptLinks(guardPinPrefix, g.links); err != nil {
		return err
	}
	if err := g.adoptLinks(steerPinPrefix, g.steers); err != nil {
		return err
	}
	// A steering program with no guard after it would let through what it
	// leaves to the guard.
	for ifindex, l := range g.steers {
		if _, ok := g.links[ifindex]; !ok {
			if err := destroyLink(l); err != nil {
				return fmt.Errorf("remove unguarded steering program: %w", err)
			}
			delete(g.steers, ifindex)
		}
	}

	var stale []uint32
	var ifindex uint32
	var cfg guardVethCfg
	iter := g.objs.GuardVeths.Iterate()
	for iter.Next(&ifindex, &cfg) {
		if _, ok := g.links[int(ifindex)]; !ok {
			stale = append(stale, ifindex)
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("list guarded veths: %w", err)
	}
	for _, k := range stale {
		if err := g.objs.GuardVeths.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget veth %d: %w", k, err)
		}
	}
	return nil
}

// adoptLinks takes over the links pinned in PinDir whose names start with
// prefix, into links by interface, and removes those whose veth is gone.
func (g *Guard) adoptLinks(prefix string, links map[int]link.Link) error {
	pins, err := filepath.Glob(filepath.Join(g.pinDir, prefix+"*"))
	if err != nil {
		return err
	}
	for _, pin := range pins {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return fmt.Errorf("take over %s: %w", pin, err)
		}
		ifindex := tcxIfindex(l)
		if _, dup := links[ifindex]; ifindex == 0 || dup {
			// The veth is gone (the kernel keeps its link, defunct), or
			// its name changed and it got a second pin.
			if err := destroyLink(l); err != nil {
				return fmt.Errorf("remove defunct link %s: %w", pin, err)
			}
			continue
		}
		links[ifindex] = l
	}
	return nil
}

// tcxIfindex returns the interface l is attached to, or 0 if it is not a
// tcx link or its interface is gone.
func tcxIfindex(l link.Link) int {
	info, err := l.Info()
	if err != nil || info.TCX() == nil {
		return 0
	}
	return int(info.TCX().Ifindex)
}

// Attach guards the host end of a sandbox's veth, the interface ifindex
// in the caller's network namespace, with v's addresses, and in
// CaptureTC mode also attaches the steering program in front of the guard.
// Attaching again to the same interface updates its addresses and mode
// and, for links taken over from an earlier agent, their programs. With a
// PinDir the links are pinned as guard-<interface name> and
// steer-<interface name>.
//
// If the steering program cannot be attached, the guard stays: the
// sandbox then reaches nothing but the service address.
func (g *Guard) Attach(ifindex int, v GuardVeth) error {
	if ifindex <= 0 {
		return fmt.Errorf("guard interface %d: bad index", ifindex)
	}
	if err := v.validate(); err != nil {
		return fmt.Errorf("guard interface %d: %w", ifindex, err)
	}

	g.mu.Lock()
	defer g.mu.Unlock()

	// Configure first: until then, the programs drop what they see here.
	// Leaving tc mode, the steering program passes everything on from
	// here on, before it goes.
	if err := g.configure(ifindex, v); err != nil {
		return err
	}
	if err := g.guardLocked(ifindex); err != nil {
		g.objs.GuardVeths.Delete(uint32(ifindex))
		return err
	}
	if v.Mode == CaptureTC {
		return g.steerLocked(ifindex)
	}
	return g.unsteerLocked(ifindex)
}

// guardLocked makes sure the current guard program is attached to ifindex.
func (g *Guard) guardLocked(ifindex int) error {
	if l, ok := g.links[ifindex]; ok {
		if tcxIfindex(l) == ifindex {
			if err := l.Update(g.objs.KgGuardIngress); err != nil {
				return fmt.Errorf("update guard on interface %d: %w", ifindex, err)
			}
			return nil
		}
		// The guarded veth was deleted without Detach and its index has
		// gone to a new interface.
		destroyLink(l)
		delete(g.links, ifindex)
	}

	l, err := g.attachLocked(ifindex, guardPinPrefix, g.links, link.TCXOptions{
		Program: g.objs.KgGuardIngress,
	})
	if err != nil {
		return err
	}
	g.links[ifindex] = l
	return nil
}

// configure writes v's addresses and mode as the veth ifindex's veth_cfg.
func (g *Guard) configure(ifindex int, v GuardVeth) error {
	cfg := guardVethCfg{}
	if v.Sandbox4.IsValid() {
		cfg.SandboxIp4 = ip4Word(v.Sandbox4)
		cfg.Flags |= vethSandbox4
	}
	if v.Sandbox6.IsValid() {
		cfg.SandboxIp6 = ip6Words(v.Sandbox6)
		cfg.Flags |= vethSandbox6
	}
	if v.Host4.IsValid() {
		cfg.HostIp4 = ip4Word(v.Host4)
		cfg.Flags |= vethHost4
	}
	if v.Host6.IsValid() {
		cfg.HostIp6 = ip6Words(v.Host6)
		cfg.Flags |= vethHost6
	}
	if v.Mode == CaptureTC {
		cfg.Flags |= vethTC
	}
	if err := g.objs.GuardVeths.Update(uint32(ifindex), &cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("configure guard on interface %d: %w", ifindex, err)
	}
	return nil
}

// veth_cfg flags, as in guard.c.
const (
	vethSandbox4 = 1 << iota
	vethSandbox6
	vethHost4
	vethHost6
	vethTC
)

// attachLocked attaches opts.Program to the tcx ingress of ifindex and,
// with a PinDir, pins the link as prefix<interface name>, replacing a pin
// of that name left in links or by an earlier agent.
func (g *Guard) attachLocked(ifindex int, prefix string, links map[int]link.Link,
	opts link.TCXOptions) (link.Link, error) {
	var pin string
	if g.pinDir != "" {
		iface, err := net.InterfaceByIndex(ifindex)
		if err != nil {
			return nil, fmt.Errorf("interface %d: %w", ifindex, err)
		}
		pin = filepath.Join(g.pinDir, prefix+iface.Name)
		// Left by a veth of the same name that was deleted unguarded.
		if err := removePinLocked(pin, links); err != nil {
			return nil, err
		}
	}

	what := strings.TrimSuffix(prefix, "-")
	opts.Interface = ifindex
	opts.Attach = ebpf.AttachTCXIngress
	l, err := link.AttachTCX(opts)
	if err != nil {
		return nil, fmt.Errorf("attach %s to interface %d: %w", what, ifindex, kernelErr(err))
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			l.Close()
			return nil, fmt.Errorf("pin %s of interface %d: %w", what, ifindex, kernelErr(err))
		}
	}
	return l, nil
}

// removePinLocked destroys the link pinned at pin, if any, and forgets it
// if it is one of links.
func removePinLocked(pin string, links map[int]link.Link) error {
	old, err := link.LoadPinnedLink(pin, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if mine, ok := links[tcxIfindex(old)]; ok {
		destroyLink(mine)
		delete(links, tcxIfindex(old))
	}
	return destroyLink(old)
}

// Detach removes the guard and any steering program from the interface
// ifindex, unpins their links and forgets the veth's addresses. Detaching
// an interface that has no guard is not an error. The programs go away
// with the interface anyway; Detach cleans up after them.
func (g *Guard) Detach(ifindex int) error {
	g.mu.Lock()
	defer g.mu.Unlock()

	// The steering program first: alone, it would let the guard's share
	// through.
	errs := []error{g.unsteerLocked(ifindex)}
	if l, ok := g.links[ifindex]; ok {
		errs = append(errs, destroyLink(l))
		delete(g.links, ifindex)
	}
	err := g.objs.GuardVeths.Delete(uint32(ifindex))
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("forget veth %d: %w", ifindex, err))
	}
	return errors.Join(errs...)
}

// Counters returns how often the guard passed or dropped a frame for each
// reason, summed over CPUs and over all guarded veths.
func (g *Guard) Counters() (map[string]uint64, error) {
	return readCounters(g.objs.GuardCounters, guardReasonNames[:])
}

// Close releases this process's handles. Without a PinDir that detaches
// every guard; with one, the guards stay in force (see CgroupCapture.Close).
func (g *Guard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()

	var errs []error
	for _, links := range []map[int]link.Link{g.steers, g.links} {
		for ifindex, l := range links {
			errs = append(errs, l.Close())
			delete(links, ifindex)
		}
	}
	errs = append(errs, g.objs.Close())
	return errors.Join(errs...)
}

// Unpin detaches every guard and steering program, removes the pinned
// links and maps, and removes PinDir if nothing else is left in it. Used
// on clean shutdown, once the sandboxes are gone, before Close.
func (g *Guard) Unpin() error {
	g.mu.Lock()
	defer g.mu.Unlock()

	var errs []error
	for _, links := range []map[int]link.Link{g.steers, g.links} {
		for ifindex, l := range links {
			errs = append(errs, destroyLink(l))
			delete(links, ifindex)
		}
	}
	if g.pinDir == "" {
		return errors.Join(errs...)
	}
	for _, prefix := range []string{steerPinPrefix, guardPinPrefix} {
		pins, err := filepath.Glob(filepath.Join(g.pinDir, prefix+"*"))
		errs = append(errs, err)
		for _, pin := range pins {
			errs = append(errs, removePinLocked(pin, nil))
		}
	}
	errs = append(errs, unpinMaps(g.spec, g.pinDir))
	errs = append(errs, removePinDir(g.pinDir))
	return errors.Join(errs...)
}
