package testworld

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/nlretry"
)

// addRoutes routes each of dsts from the host into the world through the
// host end of the veth, with src as the source address. A route to dst that
// already goes through this world's veth is kept; one that goes anywhere
// else fails the call, since the world cannot take an address the host, or
// another world, already reaches elsewhere.
func (n *network) addRoutes(dsts []netip.Prefix, src netip.Addr) error {
	for _, dst := range dsts {
		if err := n.addRoute(dst, src); err != nil {
			return err
		}
	}
	return nil
}

func (n *network) addRoute(dst netip.Prefix, src netip.Addr) error {
	ours, err := n.routeHeld(dst)
	if err != nil {
		return err
	}
	if !ours {
		route := &netlink.Route{
			LinkIndex: n.hostIndex,
			Dst:       ipNet(dst),
			Src:       net.IP(src.AsSlice()),
			Scope:     netlink.SCOPE_LINK,
		}
		err := netlink.RouteAdd(route)
		if errors.Is(err, unix.EEXIST) {
			// Someone added it since routeHeld looked; say who.
			_, err = n.routeHeld(dst)
		}
		if err != nil {
			return fmt.Errorf("route %s into world %s: %w", dst, n.name, err)
		}
	}
	n.routes = append(n.routes, dst)

	// The main table is not the whole story: a local address or a policy
	// rule would send the traffic elsewhere whatever the route says.
	got, err := netlink.RouteGet(net.IP(dst.Addr().AsSlice()))
	if err != nil {
		return fmt.Errorf("look up host route to %s: %w", dst.Addr(), err)
	}
	if len(got) == 0 || got[0].LinkIndex != n.hostIndex {
		return fmt.Errorf("host still sends %s %s, not into world %s; "+
			"a local address or policy rule takes precedence", dst.Addr(), describeRoutes(got), n.name)
	}
	return nil
}

// routeHeld reports whether the host's main table routes dst through this
// world's veth. It fails if the table routes dst anywhere else.
func (n *network) routeHeld(dst netip.Prefix) (bool, error) {
	family := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	routes, err := nlretry.Do(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return false, fmt.Errorf("list host routes: %w", err)
	}

	ours := false
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() != dst.String() {
			continue
		}
		if n.hostIndex != 0 && r.LinkIndex == n.hostIndex {
			ours = true
			continue
		}
		return false, fmt.Errorf("host already routes %s %s: another test world, or the host "+
			"itself, holds this address, and only one world at a time can (Config.NoStandIns "+
			"leaves it out)", dst, describeRoutes([]netlink.Route{r}))
	}
	return ours, nil
}

// deleteRoutes removes the host routes addRoutes added. Naming the link in
// the request makes the kernel delete only a route through this world's veth.
func (n *network) deleteRoutes() error {
	var errs []error
	for _, dst := range n.routes {
		route := &netlink.Route{LinkIndex: n.hostIndex, Dst: ipNet(dst), Table: unix.RT_TABLE_MAIN}
		err := netlink.RouteDel(route)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete host route %s: %w", dst, err))
		}
	}
	n.routes = nil
	return errors.Join(errs...)
}

// describeRoutes says where routes lead, for error messages: "via eth0".
func describeRoutes(routes []netlink.Route) string {
	if len(routes) == 0 {
		return "nowhere"
	}
	r := routes[0]
	dev := fmt.Sprintf("link index %d", r.LinkIndex)
	if link, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		dev = link.Attrs().Name
	}
	if r.Gw != nil {
		return fmt.Sprintf("via %s dev %s", r.Gw, dev)
	}
	return "via " + dev
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
