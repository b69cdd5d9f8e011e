//go:build linux

package tproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/nlretry"
)

// RulePriority is the priority of the policy routing rule Install adds:
// ahead of the main table (32766) and of most rules other software adds,
// behind the local table (0). Only packets with the mark match it.
const RulePriority = 1000

// Install sets up policy routing, for IPv4 and IPv6, under which packets
// whose firewall mark is mark are delivered locally whatever their
// destination, in the network namespace of the calling thread:
//
//	ip rule add fwmark <mark> lookup <table> priority 1000
//	ip route add local 0.0.0.0/0 dev lo table <table>
//	(and the same with ip -6, local ::/0)
//
// A rule or route that already exists identically (left by an agent that
// died) is reused; a different default route in table is an error, as
// table must be keygate's alone. IPv6 is skipped where the kernel has
// none.
//
// undo removes the rules and routes, reused ones included, from the same
// namespace; it may be called from any thread, and more than once. Agents
// that share a host may share the mark, but each should have a table of
// its own: then one's undo leaves the other's rule in force.
//
// The rule matches locally sent packets too: if net.ipv4.tcp_fwmark_accept
// or fwmark_reflect were set, replies of the agent's sockets would carry
// the mark and be routed back to the host. Both are off by default.
func Install(mark, table uint32) (undo func() error, err error) {
	if mark == 0 || table == 0 || table == unix.RT_TABLE_MAIN || table == unix.RT_TABLE_LOCAL ||
		table == unix.RT_TABLE_DEFAULT {
		return nil, fmt.Errorf("policy routing: mark %#x, table %d: need a mark and a table "+
			"of keygate's own", mark, table)
	}
	// A handle's sockets stay in the namespace they were opened in.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("policy routing: %w", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("policy routing: %w", err)
	}

	p := &policy{h: h, mark: mark, table: int(table), lo: lo.Attrs().Index}
	defer func() {
		if err != nil {
			p.remove()
		}
	}()
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		if err := p.install(family); err != nil {
			if family == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return nil, err
		}
	}
	return p.remove, nil
}

// policy is the policy routing of one Install.
type policy struct {
	h     *netlink.Handle // closed by remove
	mark  uint32
	table int
	lo    int // loopback's index

	families []int // where the rule and route are in place

	mu      sync.Mutex
	removed bool // guarded by mu
}

func (p *policy) rule(family int) *netlink.Rule {
	r := netlink.NewRule()
	r.Family = family
	r.Priority = RulePriority
	r.Mark = p.mark
	mask := uint32(0xffffffff)
	r.Mask = &mask
	r.Table = p.table
	return r
}

func (p *policy) route(family int) *netlink.Route {
	dst := &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if family == netlink.FAMILY_V6 {
		dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	return &netlink.Route{
		Family: family, Dst: dst, LinkIndex: p.lo, Table: p.table,
		Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
	}
}

// install puts family's route, then its rule, in place. The route comes
// first so that no marked packet ever meets an empty table.
func (p *policy) install(family int) error {
	name := familyName(family)
	err := p.h.RouteAdd(p.route(family))
	if errors.Is(err, unix.EEXIST) {
		err = p.checkRoute(family)
	}
	if err != nil {
		return fmt.Errorf("policy routing: %s local route in table %d: %w", name, p.table, err)
	}
	p.families = append(p.families, family)

	// The kernel refuses an identical rule with EEXIST (NLM_F_EXCL); the
	// one there already does what this one would.
	err = p.h.RuleAdd(p.rule(family))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("policy routing: %s rule for mark %#x: %w", name, p.mark, err)
	}
	return nil
}

// checkRoute checks that the default route the kernel says table already
// has is the local one Install adds.
func (p *policy) checkRoute(family int) error {
	filter := &netlink.Route{Table: p.table}
	routes, err := nlretry.Do(func() ([]netlink.Route, error) {
		return p.h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return err
	}
	for _, r := range routes {
		ones, _ := dstMask(r.Dst)
		if ones == 0 && r.Type == unix.RTN_LOCAL && r.LinkIndex == p.lo {
			return nil
		}
	}
	return errors.New("table has another default route: is it keygate's?")
}

func dstMask(n *net.IPNet) (ones, bits int) {
	if n == nil {
		return 0, 0 // the kernel reports a default route without RTA_DST
	}
	return n.Mask.Size()
}

// remove deletes the rules and routes install put in place, rules first.
func (p *policy) remove() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return nil
	}
	p.removed = true
	defer p.h.Close()

	var errs []error
	for _, family := range p.families {
		err := p.h.RuleDel(p.rule(family))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s rule: %w", familyName(family), err))
		}
	}
	for _, family := range p.families {
		// Gone already: ESRCH for IPv4, ENOENT for IPv6.
		err := p.h.RouteDel(p.route(family))
		if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove %s route: %w", familyName(family), err))
		}
	}
	return errors.Join(errs...)
}

func familyName(family int) string {
	if family == netlink.FAMILY_V6 {
		return "IPv6"
	}
	return "IPv4"
}
