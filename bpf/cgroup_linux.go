//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
)

// CgroupCapture holds the loaded cgroup capture programs and their maps.
type CgroupCapture struct {
	spec   *ebpf.CollectionSpec // what was loaded; names the pinned maps
	objs   cgroupObjects
	pinDir string // CgroupConfig.PinDir

	mu    sync.Mutex
	links []cgroupLink // attachments made by Attach; guarded by mu
}

// LoadCgroup loads the cgroup capture programs into the kernel, with cfg's
// addresses compiled in. Nothing is attached until Attach.
//
// With cfg.PinDir set, the maps holding live state (sock_dst, conn_dst,
// counters, and the deny_events ring) are pinned there, and maps pinned by
// an earlier load are reused, so redirected sockets, counters and unread
// events survive an agent restart. A
// pinned map this version cannot use (an upgrade changed its layout) is
// replaced by a fresh, empty one: sockets redirected before the upgrade
// then lose their recorded destination, and TakeConn and getpeername fail
// closed for them.
func LoadCgroup(cfg CgroupConfig) (*CgroupCapture, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	spec, err := loadCgroup()
	if err != nil {
		return nil, err
	}
	if err := setCgroupConsts(spec, cfg); err != nil {
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

	c := &CgroupCapture{spec: spec, pinDir: cfg.PinDir}
	if err := spec.LoadAndAssign(&c.objs, &opts); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load cgroup programs: %+v", verr)
		}
		return nil, fmt.Errorf("load cgroup programs: %w", kernelErr(err))
	}
	return c, nil
}

func setCgroupConsts(spec *ebpf.CollectionSpec, cfg CgroupConfig) error {
	consts := map[string]any{
		cgroupVarProxyIp4:  ip4Word(cfg.Proxy.Addr()),
		cgroupVarProxyPort: cfg.Proxy.Port(),
		cgroupVarDnsIp4:    ip4Word(cfg.Resolver.Addr()),
		cgroupVarDnsPort:   cfg.Resolver.Port(),
	}
	if cfg.Proxy6.IsValid() {
		consts[cgroupVarProxyIp6] = ip6Words(cfg.Proxy6.Addr())
		consts[cgroupVarProxy6Port] = cfg.Proxy6.Port()
		consts[cgroupVarDnsIp6] = ip6Words(cfg.Resolver6.Addr())
		consts[cgroupVarDns6Port] = cfg.Resolver6.Port()
		consts[cgroupVarHaveIp6] = uint8(1)
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// TakeConn returns the original destination of the captured TCP connection
// whose sandbox end is src, and forgets it. src may be IPv4, IPv6 or
// v4-mapped (as a dual-stack listener reports IPv4 peers).
func (c *CgroupCapture) TakeConn(src netip.AddrPort) (OrigDst, error) {
	if !src.Addr().IsValid() {
		return OrigDst{}, fmt.Errorf("connection from %s: %w", src, ErrUnknownConn)
	}
	key := cgroupConnKey{Ip6: ip6Words(src.Addr()), Port: src.Port()}

	var val cgroupOrigDst
	if err := c.objs.ConnDst.LookupAndDelete(&key, &val); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return OrigDst{}, fmt.Errorf("connection from %s: %w", src, ErrUnknownConn)
		}
		return OrigDst{}, fmt.Errorf("look up connection from %s: %w", src, err)
	}
	return OrigDst{
		Dst:      netip.AddrPortFrom(addrFromWords(val.Ip6), val.Port),
		CgroupID: val.CgroupId,
	}, nil
}

// Counters returns how often the programs exited for each reason, summed
// over CPUs. With a PinDir the counts survive agent restarts.
func (c *CgroupCapture) Counters() (map[string]uint64, error) {
	return readCounters(c.objs.Counters, reasonNames[:])
}

// Close releases this process's handles on the programs, maps and links.
// Without a PinDir that detaches the programs. With one, pinned links and
// maps stay in force, so sandboxes remain captured until a later agent
// takes them over (LoadCgroup and Attach with the same PinDir) or Unpin
// removes them.
func (c *CgroupCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.Close())
	}
	c.links = nil
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// CgroupID returns the kernel's ID of the cgroup v2 directory at path: the
// inode number, which is what bpf_get_current_cgroup_id reports.
func CgroupID(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return inode(fi)
}
