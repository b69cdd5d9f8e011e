package resolver

import "net/netip"

// internalPrefixes are ranges a public name must not resolve to besides
// those netip.Addr already classifies: loopback (127/8, ::1), RFC 1918 and
// unique-local fc00::/7, link-local (169.254/16, fe80::/10), multicast
// (224/4, ff00::/8) and unspecified.
//
// Documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
// 2001:db8::/32) are not listed: nothing on a real network uses them, so
// they reach nothing internal, and tests serve names on them.
var internalPrefixes = []netip.Prefix{
	// IPv4.
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network" (RFC 791); 0.0.0.0 is the host on Linux
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space for carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments, such as DS-Lite (RFC 6890)
	netip.MustParsePrefix("192.88.99.0/24"), // 6to4 relay anycast, deprecated (RFC 7526)
	netip.MustParsePrefix("198.18.0.0/15"),  // network benchmarking (RFC 2544), often used internally
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and 255.255.255.255 limited broadcast

	// IPv6. v4-mapped ::ffff:0:0/96 is unmapped and judged as IPv4.
	netip.MustParsePrefix("::/96"),          // IPv4-compatible, deprecated (RFC 4291); holds :: and ::1
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215): leads into a local network
	netip.MustParsePrefix("100::/64"),       // discard-only (RFC 6666)
	netip.MustParsePrefix("2001::/32"),      // Teredo tunnelling (RFC 4380)
	netip.MustParsePrefix("2001:2::/48"),    // benchmarking (RFC 5180)
	netip.MustParsePrefix("2001:20::/28"),   // ORCHIDv2, not routable (RFC 7343)
	netip.MustParsePrefix("5f00::/16"),      // SRv6 segment identifiers (RFC 9602)
	netip.MustParsePrefix("fec0::/10"),      // site-local, deprecated (RFC 3879)
}

// Prefixes whose addresses embed an IPv4 address that a translator or relay
// would deliver to. They are internal when the embedded address is.
var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96") // well-known NAT64 (RFC 6052): v4 in bits 96-127
	sixToFour   = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056): v4 in bits 16-47
)

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
	addr = addr.Unmap()
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
	if v4, ok := embeddedV4(addr); ok {
		return internal(v4)
	}
	return false
}

// embeddedV4 returns the IPv4 address a NAT64 or 6to4 address leads to.
func embeddedV4(addr netip.Addr) (netip.Addr, bool) {
	b := addr.As16()
	switch {
	case nat64Prefix.Contains(addr):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(addr):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}
