//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// cgroupLink is one program attached to a cgroup by Attach.
type cgroupLink struct {
	link.Link
	fresh bool // made by this Attach rather than taken over from a pin
}

// cgroupHook is one of the cgroup programs and where it attaches.
type cgroupHook struct {
	pin  string // file name of its link in PinDir
	prog *ebpf.Program
	typ  ebpf.AttachType
}

// hooks lists the programs in the order Attach attaches or updates them:
// the packet filter first, then the programs that read sock_dst before the
// ones that write it, so during a takeover new writers never feed old
// readers.
func (c *CgroupCapture) hooks() []cgroupHook {
	p := &c.objs.cgroupPrograms
	return []cgroupHook{
		{"cgroup-skb-egress", p.KgSkbEgress, ebpf.AttachCGroupInetEgress},
		{"cgroup-sockops", p.KgSockops, ebpf.AttachCGroupSockOps},
		{"cgroup-sock-release", p.KgSockRelease, ebpf.AttachCgroupInetSockRelease},
		{"cgroup-recvmsg4", p.KgRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
		{"cgroup-recvmsg6", p.KgRecvmsg6, ebpf.AttachCGroupUDP6Recvmsg},
		{"cgroup-getpeername4", p.KgGetpeername4, ebpf.AttachCgroupInet4GetPeername},
		{"cgroup-getpeername6", p.KgGetpeername6, ebpf.AttachCgroupInet6GetPeername},
		{"cgroup-connect4", p.KgConnect4, ebpf.AttachCGroupInet4Connect},
		{"cgroup-connect6", p.KgConnect6, ebpf.AttachCGroupInet6Connect},
		{"cgroup-sendmsg4", p.KgSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{"cgroup-sendmsg6", p.KgSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
	}
}

// Attach attaches every capture program to the cgroup v2 directory at path.
// Programs attached to a cgroup apply to all of its descendants, so keygate
// attaches once to its parent cgroup and creates one child per sandbox.
//
// With a PinDir, each link is pinned there. Links pinned by an earlier
// agent for the same cgroup are updated in place to this capture's
// programs, so the cgroup is never without them and never has two copies;
// pinned links for another cgroup are detached. One PinDir serves one
// cgroup.
//
// On error, the attachments this call made are undone; links it took over
// keep running the programs they were updated to.
func (c *CgroupCapture) Attach(path string) (err error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cgID, err := CgroupID(path)
	if err != nil {
		return fmt.Errorf("attach to cgroup: %w", err)
	}

	var made []cgroupLink
	defer func() {
		if err == nil {
			return
		}
		for _, l := range made {
			if l.fresh {
				destroyLink(l)
			} else {
				l.Close()
			}
		}
	}()
	for _, h := range c.hooks() {
		l, err := c.attachHook(path, cgID, h)
		if err != nil {
			return fmt.Errorf("attach %s to %s: %w", h.prog, path, kernelErr(err))
		}
		made = append(made, l)
	}
	c.links = append(c.links, made...)
	return nil
}

// attachHook attaches h to the cgroup at path, or takes over the link an
// earlier agent pinned for it.
func (c *CgroupCapture) attachHook(path string, cgID uint64, h cgroupHook) (cgroupLink, error) {
	opts := link.CgroupOptions{Path: path, Attach: h.typ, Program: h.prog}
	if c.pinDir == "" {
		l, err := link.AttachCgroup(opts)
		return cgroupLink{l, true}, err
	}

	pin := filepath.Join(c.pinDir, h.pin)
	old, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil && isCgroupLink(old, cgID, h.typ):
		if err := old.Update(h.prog); err != nil {
			old.Close()
			return cgroupLink{}, fmt.Errorf("update pinned link: %w", err)
		}
		return cgroupLink{old, false}, nil
	case err == nil:
		// Pinned for a cgroup that was removed or replaced since.
		if err := destroyLink(old); err != nil {
			return cgroupLink{}, fmt.Errorf("remove stale pinned link: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return cgroupLink{}, err
	}

	l, err := link.AttachCgroup(opts)
	if err != nil {
		return cgroupLink{}, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return cgroupLink{}, fmt.Errorf("pin link: %w", kernelErr(err))
	}
	return cgroupLink{l, true}, nil
}

// isCgroupLink reports whether l attaches a program of type typ to the
// cgroup with ID cgID.
func isCgroupLink(l link.Link, cgID uint64, typ ebpf.AttachType) bool {
	info, err := l.Info()
	if err != nil || info.Cgroup() == nil {
		return false
	}
	cg := info.Cgroup()
	return cg.CgroupId == cgID && ebpf.AttachType(cg.AttachType) == typ
}

// Unpin detaches every capture program from its cgroup, removes the pinned
// links and maps, and removes PinDir if nothing else is left in it. It also
// removes pins an earlier agent left that this capture did not take over.
// Processes still in the cgroup are no longer captured afterwards (the
// veth guards still stop their traffic), so Unpin belongs to a clean
// shutdown, after the sandboxes have ended and before Close. Without a
// PinDir it just detaches.
func (c *CgroupCapture) Unpin() error {
	c.mu.Lock()
	defer c.mu.Unlock()

	var errs []error
	for _, l := range c.links {
		errs = append(errs, destroyLink(l))
	}
	c.links = nil
	if c.pinDir == "" {
		return errors.Join(errs...)
	}

	for _, h := range c.hooks() {
		l, err := link.LoadPinnedLink(filepath.Join(c.pinDir, h.pin), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, destroyLink(l))
	}
	errs = append(errs, unpinMaps(c.spec, c.pinDir))
	errs = append(errs, removePinDir(c.pinDir))
	return errors.Join(errs...)
}
