package ca

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"unicode"

	"github.com/keygate/keygate/pkg/domain"
)

// ErrInvalidHost is wrapped by every error Leaves.Get returns for a host it
// will not issue a certificate for.
var ErrInvalidHost = errors.New("invalid leaf host")

// leafName is a host normalised for issuance.
type leafName struct {
	key string // cache key and, for a DNS name, the SAN
	ip  net.IP // the IP SAN, or nil for a DNS name
}

// parseHost normalises host (lowercase, one trailing dot stripped) and
// classifies it as an IP literal or a DNS name. It refuses empty names,
// wildcards, whitespace and anything pkg/domain does not accept as a host name,
// because a leaf is issued for exactly the name a sandbox dialled.
func parseHost(host string) (leafName, error) {
	name := domain.Normalize(host)
	switch {
	case name == "":
		return leafName{}, fmt.Errorf("%w: empty host", ErrInvalidHost)
	case strings.Contains(name, "*"):
		return leafName{}, fmt.Errorf("%w: %q: wildcards are never issued", ErrInvalidHost, host)
	case strings.ContainsFunc(name, unicode.IsSpace):
		return leafName{}, fmt.Errorf("%w: %q: contains whitespace", ErrInvalidHost, host)
	case strings.HasSuffix(name, "."):
		return leafName{}, fmt.Errorf("%w: %q: more than one trailing dot", ErrInvalidHost, host)
	}

	if addr, err := netip.ParseAddr(name); err == nil {
		return parseIP(host, addr)
	}
	if err := domain.ValidateName(name); err != nil {
		return leafName{}, fmt.Errorf("%w: %w", ErrInvalidHost, err)
	}
	return leafName{key: name}, nil
}

// parseIP returns the leafName for an IP literal. An IPv4-mapped IPv6 address
// is treated as its IPv4 form, which Go's verifier (like most) considers equal.
func parseIP(host string, addr netip.Addr) (leafName, error) {
	if addr.Zone() != "" {
		return leafName{}, fmt.Errorf("%w: %q: an IP SAN cannot carry a zone", ErrInvalidHost, host)
	}
	addr = addr.Unmap()
	return leafName{key: addr.String(), ip: net.IP(addr.AsSlice())}, nil
}
