// Package hostagent is keygated: it owns the vault store, the host CA, the
// resolver, the proxy and the capture programs, and creates and destroys
// sandboxes on behalf of the control API.
package hostagent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/cgroup"
)

// DefaultSandboxCIDR6 is the unique local /48 sandboxes' IPv6 addresses
// come from ("kgate" in its global ID).
var DefaultSandboxCIDR6 = netip.MustParsePrefix("fd6b:6761:7465::/48")

// Config is the agent's configuration; zero fields take the defaults
// documented on each.
type Config struct {
	StateDir      string         // vault store, CA, master key; default /var/lib/keygate
	Socket        string         // control API socket; default api.DefaultSocket
	MasterKeyFile string         // default StateDir/master.key
	UpstreamDNS   string         // host:port; default: first nameserver of /etc/resolv.conf
	UpstreamCA    string         // extra PEM roots trusted for upstreams (tests)
	AllowPrivate  []netip.Prefix // private ranges upstream answers may point into
	SandboxCIDR   netip.Prefix   // sandbox addresses; default 10.233.0.0/16
	// SandboxCIDR6 is the /48 sandboxes' IPv6 addresses come from, and
	// the agent's IPv6 service address; default DefaultSandboxCIDR6.
	SandboxCIDR6 netip.Prefix
	// NoIPv6 gives sandboxes no IPv6 at all: AAAA queries get empty
	// answers and IPv6 connections are refused.
	NoIPv6       bool
	CgroupParent string // parent cgroup of all sandboxes; default <cgroup2>/keygate
	ProxyPort    uint16 // default 15001
	DNSPort      uint16 // default 15053
	SandboxUID   uint32 // uid and gid sandbox commands run as; default 65534
	// APIGroup, if set, is a group whose members may use the control API
	// besides root; nil = root only.
	APIGroup *uint32
	// MetricsAddr is the host address the Prometheus metrics and profiler
	// are served on; "" = off.
	MetricsAddr string
	// Version is reported by keygate status.
	Version string
	// RunscPath is gVisor's runsc, for --runtime runsc; default: "runsc"
	// on PATH, then /usr/local/bin/runsc.
	RunscPath string
	// RunscPlatform is runsc's platform; default systrap.
	RunscPlatform string
	// RunscRootfs is the root directory runsc sandboxes see, read-only;
	// default "/" (the host's).
	RunscRootfs string
	// RunscDebugLog, if set, is a directory runsc writes debug logs to,
	// one subdirectory per sandbox.
	RunscDebugLog string
	// Store is the vault store: "" for the embedded engine in StateDir, or
	// etcd://host:2379,...[?prefix=..&cert=..&key=..&ca=..&grace=..] for a
	// fleet sharing vaults on etcd.
	Store string
	// Node names this host in a fleet (its audit chain, schedule claims);
	// default the host name.
	Node string
	// InspectAll terminates TLS for every connection, also those of
	// sandboxes without credentials, which are otherwise spliced.
	InspectAll bool
	// CredentialRefresh bounds how long the proxy serves a credential from
	// memory before reading the store again; 0 = DefaultCredentialRefresh.
	CredentialRefresh time.Duration
	// RetiredRedaction is how long a secret replaced by a rotation is still
	// redacted from answers (never sent): 0 = DefaultRetiredRedaction, < 0 =
	// not at all.
	RetiredRedaction time.Duration
	// AuditMaxBytes rotates the embedded store's audit log into segments
	// past this size (audit.Options.MaxFileBytes); 0 never rotates.
	AuditMaxBytes int64
	// AuditEtcdRecords is about how many of this host's audit records stay
	// in etcd (an etcd:// store); older ones move to a local log under
	// STATE-DIR/audit-etcd (audit.EtcdOptions.MaxRecords). 0 keeps all.
	AuditEtcdRecords int
	// MaxRequestsPerSandbox caps a sandbox's requests in flight through
	// the proxy; 0 = proxy.DefaultMaxRequestsPerSandbox.
	MaxRequestsPerSandbox int
	Logger                *slog.Logger // nil = discard
}

func (c *Config) setDefaults() error {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/keygate"
	}
	if c.Socket == "" {
		c.Socket = api.DefaultSocket
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.StateDir, "master.key")
	}
	if c.UpstreamDNS == "" {
		ns, err := systemNameserver("/etc/resolv.conf")
		if err != nil {
			return fmt.Errorf("no --upstream-dns given: %w", err)
		}
		c.UpstreamDNS = ns
	}
	if _, _, err := net.SplitHostPort(c.UpstreamDNS); err != nil {
		c.UpstreamDNS = net.JoinHostPort(c.UpstreamDNS, "53")
	}
	if !c.SandboxCIDR.IsValid() {
		c.SandboxCIDR = netip.MustParsePrefix("10.233.0.0/16")
	}
	if c.NoIPv6 {
		c.SandboxCIDR6 = netip.Prefix{}
	} else if !c.SandboxCIDR6.IsValid() {
		c.SandboxCIDR6 = DefaultSandboxCIDR6
	}
	if c.SandboxCIDR6.IsValid() && (!c.SandboxCIDR6.Addr().Is6() || c.SandboxCIDR6.Addr().Is4In6() || c.SandboxCIDR6.Bits() != 48) {
		return fmt.Errorf("sandbox IPv6 CIDR %s: need an IPv6 /48", c.SandboxCIDR6)
	}
	c.SandboxCIDR6 = c.SandboxCIDR6.Masked()
	if !c.SandboxCIDR.Addr().Is4() || c.SandboxCIDR.Bits() > 28 {
		return fmt.Errorf("sandbox CIDR %s: need an IPv4 prefix of /28 or larger", c.SandboxCIDR)
	}
	c.SandboxCIDR = c.SandboxCIDR.Masked()
	if c.CgroupParent == "" {
		root, err := cgroup.Mountpoint()
		if err != nil {
			return err
		}
		c.CgroupParent = filepath.Join(root, "keygate")
	}
	if c.ProxyPort == 0 {
		c.ProxyPort = 15001
	}
	if c.DNSPort == 0 {
		c.DNSPort = 15053
	}
	if c.SandboxUID == 0 {
		c.SandboxUID = 65534
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RunscPlatform == "" {
		c.RunscPlatform = "systrap"
	}
	if c.RunscPath == "" {
		c.RunscPath = "/usr/local/bin/runsc"
		if p, err := exec.LookPath("runsc"); err == nil {
			c.RunscPath = p
		}
	}
	return nil
}

// systemNameserver returns the first nameserver of a resolv.conf file.
func systemNameserver(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return net.JoinHostPort(fields[1], "53"), nil
		}
	}
	return "", errors.New(path + " names no nameserver")
}
