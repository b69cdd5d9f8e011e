//go:build linux

package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// CgroupConfig says where the cgroup programs send captured traffic.
type CgroupConfig struct {
	Proxy    netip.AddrPort // the proxy's transparent listener (IPv4)
	Resolver netip.AddrPort // the resolver (IPv4, UDP and TCP)
}

func (c CgroupConfig) validate() error {
	if !c.Proxy.Addr().Is4() || c.Proxy.Port() == 0 {
		return fmt.Errorf("proxy address %s: need an IPv4 address and port", c.Proxy)
	}
	if !c.Resolver.Addr().Is4() || c.Resolver.Port() == 0 {
		return fmt.Errorf("resolver address %s: need an IPv4 address and port", c.Resolver)
	}
	return nil
}

// CgroupCapture holds the loaded cgroup capture programs and their maps.
type CgroupCapture struct {
	objs  cgroupObjects
	links []link.Link // attachments made by Attach; closed by Close
}

// LoadCgroup loads the cgroup capture programs into the kernel, with cfg's
// addresses compiled in. Nothing is attached until Attach.
func LoadCgroup(cfg CgroupConfig) (*CgroupCapture, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}

	spec, err := loadCgroup()
	if err != nil {
		return nil, err
	}
	consts := map[string]any{
		cgroupVarProxyIp4:  ip4Network(cfg.Proxy.Addr()),
		cgroupVarProxyPort: cfg.Proxy.Port(),
		cgroupVarDnsIp4:    ip4Network(cfg.Resolver.Addr()),
		cgroupVarDnsPort:   cfg.Resolver.Port(),
	}
	for name, v := range consts {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}

	c := &CgroupCapture{}
	if err := spec.LoadAndAssign(&c.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load cgroup programs: %+v", verr)
		}
		return nil, fmt.Errorf("load cgroup programs: %w", err)
	}
	return c, nil
}

// Attach attaches every capture program to the cgroup v2 directory at path.
// Programs attached to a cgroup apply to all of its descendants, so keygate
// attaches once to its parent cgroup and creates one child per sandbox. On
// error, the attachments made so far are undone.
func (c *CgroupCapture) Attach(path string) (err error) {
	progs := []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{c.objs.KgConnect4, ebpf.AttachCGroupInet4Connect},
		{c.objs.KgSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{c.objs.KgRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
		{c.objs.KgSockops, ebpf.AttachCGroupSockOps},
	}

	var made []link.Link
	defer func() {
		if err != nil {
			for _, l := range made {
				l.Close()
			}
		}
	}()
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: p.typ, Program: p.prog})
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", p.prog, path, err)
		}
		made = append(made, l)
	}
	c.links = append(c.links, made...)
	return nil
}

// OrigDst is where a captured connection was going before it was redirected.
type OrigDst struct {
	Dst      netip.AddrPort
	CgroupID uint64 // cgroup of the process that called connect()
}

// ErrUnknownConn is returned by TakeConn when no destination was recorded.
var ErrUnknownConn = errors.New("no original destination recorded")

// TakeConn returns the original destination of the captured TCP connection
// whose sandbox end is src, and forgets it.
func (c *CgroupCapture) TakeConn(src netip.AddrPort) (OrigDst, error) {
	if !src.Addr().Unmap().Is4() {
		return OrigDst{}, fmt.Errorf("connection from %s: %w", src, ErrUnknownConn)
	}
	key := cgroupConnKey{Ip4: ip4Network(src.Addr().Unmap()), Port: src.Port()}

	var val cgroupOrigDst
	if err := c.objs.ConnDst.LookupAndDelete(&key, &val); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return OrigDst{}, fmt.Errorf("connection from %s: %w", src, ErrUnknownConn)
		}
		return OrigDst{}, fmt.Errorf("look up connection from %s: %w", src, err)
	}

	var ip [4]byte
	binary.NativeEndian.PutUint32(ip[:], val.Ip4)
	return OrigDst{
		Dst:      netip.AddrPortFrom(netip.AddrFrom4(ip), val.Port),
		CgroupID: val.CgroupId,
	}, nil
}

// Counters returns how often the programs exited for each reason, summed
// over CPUs.
func (c *CgroupCapture) Counters() (map[string]uint64, error) {
	out := make(map[string]uint64, len(reasonNames))
	for i, name := range reasonNames {
		var perCPU []uint64
		if err := c.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[name] = sum
	}
	return out, nil
}

// Close detaches the programs and releases every kernel object.
func (c *CgroupCapture) Close() error {
	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.Close())
	}
	c.links = nil
	errs = append(errs, c.objs.Close())
	return errors.Join(errs...)
}

// ip4Network returns addr's four bytes as the kernel stores them in a
// __u32 field: network byte order, read in host order.
func ip4Network(addr netip.Addr) uint32 {
	b := addr.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
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
