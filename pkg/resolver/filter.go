package resolver

import "net/netip"

// internalPrefixes are IPv4 ranges a public name must not resolve to besides
// those netip.Addr already classifies (loopback, RFC 1918, link-local,
// multicast, unspecified).
var internalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network" (RFC 791); 0.0.0.0 reaches the host on Linux
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space for carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and 255.255.255.255 limited broadcast
}

// permitted reports whether addr may be returned to a sandbox: it is not
// internal, or an operator has allowed its range with Config.AllowPrivate.
func (r *Resolver) permitted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range r.allowPrivate {
		if p.Contains(addr) {
			return true
		}
	}
	return !internal(addr)
}

// internal reports whether addr is in a range that reaches the host, its
// local network or its provider's network rather than the internet. Public
// names resolving into these ranges are how DNS rebinding reaches services
// such as cloud metadata at 169.254.169.254.
func internal(addr netip.Addr) bool {
	if addr.IsLoopback() || addr.IsPrivate() || addr.IsUnspecified() ||
		addr.IsLinkLocalUnicast() || addr.IsMulticast() ||
		addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range internalPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
