package testworld

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Default values Config falls back to.
var (
	DefaultPrefix  = netip.MustParsePrefix("10.250.0.0/24")
	DefaultPrefix6 = netip.MustParsePrefix("fd6b:6777:0:1::/64")
	DefaultZone    = "example.test"
)

// maxNameLen keeps "<name>h" well inside the kernel's 15-byte interface names.
const maxNameLen = 8

// maxPrefix6Bits leaves the world's IPv6 hosts, whose last group is at most
// 0x99 (see addrAt6), room in the last byte of the prefix.
const maxPrefix6Bits = 120

// Config describes a world. The zero Config is valid: it gives a world with
// IPv4, IPv6 and the stand-ins.
type Config struct {
	// Name is the network namespace name and the stem of the veth names
	// ("<name>h" on the host, "<name>w" in the world). At most 8 characters
	// of [a-z0-9-]. Empty means "kgw" and four random hex digits.
	Name string

	// Prefix is the world's IPv4 subnet, /25 or wider. The zero value means
	// DefaultPrefix. Two live worlds must not share a prefix.
	Prefix netip.Prefix

	// Prefix6 is the world's IPv6 subnet, /120 or wider and not link-local.
	// The zero value means DefaultPrefix6. Two live worlds must not share a
	// prefix. It must be zero when NoIPv6 is set.
	Prefix6 netip.Prefix

	// NoIPv6 leaves IPv6 out of the world: no IPv6 addresses, listeners or
	// AAAA records, and the World's IPv6 fields stay zero. Set it on kernels
	// booted without IPv6.
	NoIPv6 bool

	// NoStandIns leaves out the stand-in metadata server and the stray DNS
	// sink (see the package doc). Their host routes can exist only once per
	// host, so only one world at a time can have them; set NoStandIns on a
	// world that must run beside another.
	NoStandIns bool

	// Zone is the DNS zone the world serves. Empty means DefaultZone.
	Zone string

	// OnRequest, if not nil, is called after each HTTP request is recorded,
	// with the world host name it was filed under ("api.<zone>", "metadata").
	// It runs on the server's goroutine and must not block for long.
	OnRequest func(server string, r Request)
}

// withDefaults returns a copy of c with its zero fields filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return c, fmt.Errorf("pick world name: %w", err)
		}
		c.Name = "kgw" + hex.EncodeToString(b[:])
	}
	if !c.Prefix.IsValid() {
		c.Prefix = DefaultPrefix
	}
	if !c.Prefix6.IsValid() && !c.NoIPv6 {
		c.Prefix6 = DefaultPrefix6
	}
	if c.Zone == "" {
		c.Zone = DefaultZone
	}
	c.Zone = strings.ToLower(strings.Trim(c.Zone, "."))
	return c, c.validate()
}

func (c Config) validate() error {
	if len(c.Name) > maxNameLen {
		return fmt.Errorf("world name %q: longer than %d characters", c.Name, maxNameLen)
	}
	for _, r := range c.Name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("world name %q: only a-z, 0-9 and '-' are allowed", c.Name)
		}
	}
	if !c.Prefix.Addr().Is4() || c.Prefix.Bits() > 25 {
		return fmt.Errorf("world prefix %s: need an IPv4 prefix of /25 or wider", c.Prefix)
	}
	if err := c.validatePrefix6(); err != nil {
		return err
	}
	if c.Zone == "" {
		return errors.New("world zone is empty")
	}
	return nil
}

func (c Config) validatePrefix6() error {
	if c.NoIPv6 {
		if c.Prefix6.IsValid() {
			return fmt.Errorf("world prefix6 %s: set although NoIPv6 is", c.Prefix6)
		}
		return nil
	}
	a := c.Prefix6.Addr()
	if !a.Is6() || a.Is4In6() || c.Prefix6.Bits() > maxPrefix6Bits {
		return fmt.Errorf("world prefix6 %s: need an IPv6 prefix of /%d or wider",
			c.Prefix6, maxPrefix6Bits)
	}
	if a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsLoopback() {
		return fmt.Errorf("world prefix6 %s: need a unicast prefix that is not link-local", c.Prefix6)
	}
	return nil
}
