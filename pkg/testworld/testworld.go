// Package testworld builds a small, fake internet for keygate's end-to-end
// tests: a network namespace joined to the host by a veth pair, with a DNS
// server and HTTPS servers inside it that record everything they receive.
//
// Tests point keygate's proxy and resolver at the world, drive a sandbox, and
// then ask the world where a secret went: Requests shows what each host got,
// and Received answers "did these bytes reach anything in the world at all".
// Because every world address lives in a namespace the test created, a
// capture bug delivers traffic to the world, where the test sees it, and
// nothing leaves the machine.
//
// The world has these hosts, each at a fixed offset in Config.Prefix:
//
//	.1   the host end of the veth (keygate's proxy and resolver dial from here)
//	.53  DNS for Config.Zone, UDP and TCP
//	.10  api.<zone>: the approved upstream, HTTPS on 443
//	.20  other.<zone>: an allowed host without credentials, HTTPS on 443
//	.66  evil.<zone>: the attacker, HTTPS on 443, plain HTTP on 80, UDP
//	     sinks on 53, 443 and 9999, raw TCP sinks on 22, 53, 8080, 8443, 9999
//
// The world never adds NAT and never enables forwarding: the only routes are
// the host's connected route into the world and the world's default route
// back to the host end of the veth.
//
// Start needs root and Linux. It is not meant for production code.
package testworld

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotSupported is returned by Start on systems without network namespaces.
var ErrNotSupported = errors.New("testworld: not supported on this system")

// Default values Config falls back to.
var (
	DefaultPrefix = netip.MustParsePrefix("10.250.0.0/24")
	DefaultZone   = "example.test"
)

// Host offsets inside the world prefix.
const (
	hostOffset     = 1
	apiOffset      = 10
	otherOffset    = 20
	dnsOffset      = 53
	attackerOffset = 66
)

// Ports the attacker listens on besides HTTPS 443 and HTTP 80. The UDP sink on
// 53 catches DNS a sandbox sends straight to an attacker-chosen resolver; the
// TCP sinks stand for ports a test may aim raw (non-HTTP) traffic at.
var (
	attackerUDPPorts = []uint16{53, 443, 9999}
	attackerTCPPorts = []uint16{22, 53, 8080, 8443, 9999}
)

// maxNameLen keeps "<name>h" well inside the kernel's 15-byte interface names.
const maxNameLen = 8

// Config describes a world. The zero Config is valid.
type Config struct {
	// Name is the network namespace name and the stem of the veth names
	// ("<name>h" on the host, "<name>w" in the world). At most 8 characters
	// of [a-z0-9-]. Empty means "kgw" and four random hex digits.
	Name string

	// Prefix is the world's IPv4 subnet, /25 or wider. The zero value means
	// DefaultPrefix. Two live worlds must not share a prefix.
	Prefix netip.Prefix

	// Zone is the DNS zone the world serves. Empty means DefaultZone.
	Zone string

	// OnRequest, if not nil, is called after each HTTP request is recorded,
	// with the world host name that received it ("api.<zone>"). It runs on
	// the server's goroutine and must not block for long.
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
	if c.Zone == "" {
		return errors.New("world zone is empty")
	}
	return nil
}

// World is a running test world. Its exported fields are set by Start and
// must not be changed. All methods are safe for concurrent use.
type World struct {
	Name     string         // network namespace name; the host veth is Name+"h"
	Zone     string         // DNS zone served, without a trailing dot
	HostIP   netip.Addr     // host end of the veth
	DNS      netip.AddrPort // the world's DNS server, UDP and TCP
	API      netip.Addr     // api.<zone>
	Attacker netip.Addr     // evil.<zone>
	Other    netip.Addr     // other.<zone>
	CAFile   string         // PEM file of the CA that signed every world certificate
	CAPEM    []byte         // contents of CAFile

	prefix netip.Prefix // the world subnet, masked
	rec    *recorder
	zone   *zone
	net    *network   // nil until the namespace exists
	ls     *listeners // nil until the servers start
	dir    string     // temporary directory holding CAFile, or ""

	// stop shuts down the servers; each is called once by Close. Only Start
	// appends to it, before the world is handed out.
	stop []func() error
	wg   sync.WaitGroup // server goroutines; done once every stop has run

	mu sync.Mutex
	// mu guards serveErrs.
	serveErrs []error // unexpected server failures, reported by Close

	closeOnce sync.Once
	closeErr  error
}

// APIHost returns "api.<zone>", the approved upstream served at API.
func (w *World) APIHost() string { return "api." + w.Zone }

// AttackerHost returns "evil.<zone>", the attacker served at Attacker.
func (w *World) AttackerHost() string { return "evil." + w.Zone }

// OtherHost returns "other.<zone>", the credential-free host served at Other.
func (w *World) OtherHost() string { return "other." + w.Zone }

// Start creates the namespace and the veth pair, starts every world server
// and returns once they all accept traffic. A namespace or host veth left
// behind by an earlier run with the same name is removed first. The caller
// must Close the world.
func Start(cfg Config) (_ *World, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}

	w := newWorld(cfg)
	defer func() {
		if err != nil {
			err = errors.Join(err, w.Close())
		}
	}()

	ca, err := newAuthority("keygate testworld CA " + cfg.Name)
	if err != nil {
		return nil, err
	}
	if err := w.writeCA(ca); err != nil {
		return nil, err
	}

	w.net, err = openNetwork(cfg.Name, netip.PrefixFrom(w.HostIP, w.prefix.Bits()), w.worldAddrs())
	if err != nil {
		return nil, err
	}

	var ls listeners
	if err := w.net.do(func() error { return ls.open(w) }); err != nil {
		ls.close()
		return nil, fmt.Errorf("listen in world %s: %w", cfg.Name, err)
	}
	if err := w.serve(&ls, ca); err != nil {
		return nil, err
	}
	return w, nil
}

func newWorld(cfg Config) *World {
	base := cfg.Prefix.Masked().Addr()
	w := &World{
		Name:     cfg.Name,
		Zone:     cfg.Zone,
		HostIP:   addrAt(base, hostOffset),
		DNS:      netip.AddrPortFrom(addrAt(base, dnsOffset), 53),
		API:      addrAt(base, apiOffset),
		Attacker: addrAt(base, attackerOffset),
		Other:    addrAt(base, otherOffset),
		prefix:   cfg.Prefix.Masked(),
		rec:      newRecorder(cfg.OnRequest),
	}
	w.zone = newZone(cfg.Zone)
	w.zone.set(w.APIHost(), []netip.Addr{w.API})
	w.zone.set(w.AttackerHost(), []netip.Addr{w.Attacker})
	w.zone.set(w.OtherHost(), []netip.Addr{w.Other})
	w.zone.setCNAME("alias."+cfg.Zone, w.APIHost())
	return w
}

// addrAt returns the IPv4 address offset hosts after base.
func addrAt(base netip.Addr, offset int) netip.Addr {
	a := base.As4()
	a[3] += byte(offset)
	return netip.AddrFrom4(a)
}

// worldAddrs lists the addresses assigned inside the world, as prefixes of
// the world subnet's length so the world has a connected route back to .1.
func (w *World) worldAddrs() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range []netip.Addr{w.DNS.Addr(), w.API, w.Other, w.Attacker} {
		out = append(out, netip.PrefixFrom(a, w.prefix.Bits()))
	}
	return out
}

func (w *World) writeCA(ca *authority) error {
	dir, err := os.MkdirTemp("", "testworld-"+w.Name+"-")
	if err != nil {
		return fmt.Errorf("create temp dir for CA: %w", err)
	}
	w.dir = dir

	w.CAPEM = ca.certPEM
	w.CAFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(w.CAFile, w.CAPEM, 0o644); err != nil {
		return fmt.Errorf("write CA file: %w", err)
	}
	return nil
}

// Close stops every server, deletes the veth pair and the namespace, and
// removes the temporary files. It is safe to call more than once; later
// calls return the first call's result.
func (w *World) Close() error {
	w.closeOnce.Do(func() {
		var errs []error
		for _, stop := range w.stop {
			errs = append(errs, stop())
		}
		w.wg.Wait()
		if w.ls != nil {
			w.ls.close()
		}
		errs = append(errs, w.takeServeErrors())
		if w.net != nil {
			errs = append(errs, w.net.close())
		}
		if w.dir != "" {
			errs = append(errs, os.RemoveAll(w.dir))
		}
		w.closeErr = errors.Join(errs...)
	})
	return w.closeErr
}

// Requests returns the HTTP requests the world host named host received
// ("api.<zone>", "evil.<zone>" or "other.<zone>"), oldest first. Requests are
// filed by the server that received them, whatever their Host header says.
func (w *World) Requests(host string) []Request {
	return w.rec.requestsFor(strings.ToLower(strings.TrimSuffix(host, ".")))
}

// Datagrams returns what the attacker's sinks received, oldest first: one
// entry per UDP datagram, and one per TCP connection to a raw TCP sink.
func (w *World) Datagrams() []Datagram { return w.rec.datagramsCopy() }

// DNSQueries returns every question the world's DNS server received.
func (w *World) DNSQueries() []DNSQuery { return w.rec.queriesCopy() }

// Received reports whether b appears anywhere the world recorded: a request's
// Host, SNI, method, path, header or trailer names and values, or body; a
// datagram or TCP sink payload; or a DNS question name. DNS names are
// compared case-insensitively, since resolvers may change a name's case on
// the way. An empty b is never received.
func (w *World) Received(b []byte) bool { return w.rec.contains(b) }

// SetRecord makes the world's DNS answer name with addrs, replacing any
// records name had (a CNAME included): IPv4 addresses become A records,
// IPv6 addresses AAAA records. With no addrs, name is removed and answers
// NXDOMAIN. name need not be inside Zone.
func (w *World) SetRecord(name string, addrs ...netip.Addr) {
	w.zone.set(name, addrs)
}

// serverNames maps each world server to its host name and address.
func (w *World) serverNames() map[string]netip.Addr {
	return map[string]netip.Addr{
		w.APIHost():      w.API,
		w.OtherHost():    w.Other,
		w.AttackerHost(): w.Attacker,
	}
}
