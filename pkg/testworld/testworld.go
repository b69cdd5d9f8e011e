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
// The world has these hosts, each at a fixed offset in Config.Prefix and, over
// IPv6, in Config.Prefix6 at the same offset spelled as the address's last
// group, so that api is at 10.250.0.10 and fd6b:6777:0:1::10:
//
//	.1   ::1   the host end of the veth (keygate's proxy and resolver dial from here)
//	.53  ::53  DNS for Config.Zone, UDP and TCP
//	.10  ::10  api.<zone>: the approved upstream, HTTPS on 443. At ::10 it also
//	           serves api6.<zone>, a name with only an AAAA record, and files
//	           requests for that name under it (see API6Host)
//	.20  ::20  other.<zone>: an allowed host without credentials, HTTPS on 443
//	.66  ::66  evil.<zone>: the attacker, HTTPS on 443, plain HTTP on 80, UDP
//	           sinks on 53, 443 and 9999, raw TCP sinks on 22, 53, 8080, 8443, 9999
//
// The DNS server answers A and AAAA questions for each of these names.
// IPv6 is on unless Config.NoIPv6 is set; the IPv6 addresses skip duplicate
// address detection, so they work as soon as Start returns.
//
// Two stand-ins hold addresses outside the world's prefixes, for tests that
// must see a sandbox's traffic to them captured: a leak arrives here instead
// of leaving the machine. The host routes each /32 into the world only while
// the world lives; Config.NoStandIns leaves them out.
//
//	169.254.169.254  a cloud metadata server, plain HTTP on 80, filed as "metadata"
//	198.51.100.53    a stray DNS server: UDP and TCP sinks on 53 that record
//	                 what arrives and never answer
//
// The world never adds NAT and never enables forwarding, for IPv4 or IPv6:
// the only routes are the host's connected routes into the world, its routes
// to the stand-ins, and the world's default routes back to the host end of
// the veth.
//
// Start needs root and Linux. It is not meant for production code.
package testworld

import (
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

// Host offsets inside the world prefixes.
const (
	hostOffset     = 1
	apiOffset      = 10
	otherOffset    = 20
	dnsOffset      = 53
	attackerOffset = 66
)

// The stand-ins' fixed addresses.
var (
	metadataAddr = netip.MustParseAddr("169.254.169.254")
	strayDNSAddr = netip.MustParseAddr("198.51.100.53")
)

// metadataServer is the host name metadata requests are filed under.
const metadataServer = "metadata"

// Ports the attacker listens on besides HTTPS 443 and HTTP 80. The UDP sink on
// 53 catches DNS a sandbox sends straight to an attacker-chosen resolver; the
// TCP sinks stand for ports a test may aim raw (non-HTTP) traffic at.
var (
	attackerUDPPorts = []uint16{53, 443, 9999}
	attackerTCPPorts = []uint16{22, 53, 8080, 8443, 9999}
)

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

	// The IPv6 addresses of the hosts above; all zero with Config.NoIPv6.
	HostIP6   netip.Addr     // host end of the veth
	DNS6      netip.AddrPort // the DNS server, UDP and TCP
	API6      netip.Addr     // api.<zone>, and api6.<zone>, which has no IPv4 address
	Attacker6 netip.Addr     // evil.<zone>
	Other6    netip.Addr     // other.<zone>

	// The stand-ins' addresses; both zero with Config.NoStandIns.
	Metadata netip.Addr // 169.254.169.254, the metadata server (see MetadataHost)
	StrayDNS netip.Addr // 198.51.100.53, the DNS sink on port 53

	prefix  netip.Prefix // the world's IPv4 subnet, masked
	prefix6 netip.Prefix // the world's IPv6 subnet, masked, or zero
	rec     *recorder
	zone    *zone
	net     *network   // nil until the namespace exists
	ls      *listeners // nil until the servers start
	dir     string     // temporary directory holding CAFile, or ""

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

// APIHost returns "api.<zone>", the approved upstream served at API and API6.
func (w *World) APIHost() string { return "api." + w.Zone }

// API6Host returns "api6.<zone>", a name for the approved upstream that has
// only an AAAA record, for tests whose traffic must go over IPv6. Requests
// are filed under it when they reach API6 over TLS with this server name;
// a request for it that arrives any other way is filed under APIHost.
func (w *World) API6Host() string { return "api6." + w.Zone }

// AttackerHost returns "evil.<zone>", the attacker served at Attacker.
func (w *World) AttackerHost() string { return "evil." + w.Zone }

// OtherHost returns "other.<zone>", the credential-free host served at Other.
func (w *World) OtherHost() string { return "other." + w.Zone }

// MetadataHost returns "169.254.169.254", where the stand-in metadata server
// listens unless Config.NoStandIns is set. Requests(MetadataHost()) and
// Requests("metadata") both return what it received.
func (w *World) MetadataHost() string { return metadataAddr.String() }

// Start creates the namespace and the veth pair, starts every world server
// and returns once they all accept traffic. A namespace or host veth left
// behind by an earlier run with the same name is removed first. Start fails
// if another world, or anything else on the host, holds one of the world's
// prefixes or, unless Config.NoStandIns is set, a route to a stand-in. The
// caller must Close the world.
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

	w.net, err = openNetwork(cfg.Name, w.netPlan())
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
	if !cfg.NoIPv6 {
		w.prefix6 = cfg.Prefix6.Masked()
		base6 := w.prefix6.Addr()
		w.HostIP6 = addrAt6(base6, hostOffset)
		w.DNS6 = netip.AddrPortFrom(addrAt6(base6, dnsOffset), 53)
		w.API6 = addrAt6(base6, apiOffset)
		w.Attacker6 = addrAt6(base6, attackerOffset)
		w.Other6 = addrAt6(base6, otherOffset)
	}
	if !cfg.NoStandIns {
		w.Metadata = metadataAddr
		w.StrayDNS = strayDNSAddr
	}

	w.zone = newZone(cfg.Zone)
	for host, addrs := range w.serverAddrs() {
		w.zone.set(host, addrs)
	}
	w.zone.setCNAME("alias."+cfg.Zone, w.APIHost())
	if w.API6.IsValid() {
		w.zone.set(w.API6Host(), []netip.Addr{w.API6})
	}
	return w
}

// addrAt returns the IPv4 address offset hosts after base.
func addrAt(base netip.Addr, offset int) netip.Addr {
	a := base.As4()
	a[3] += byte(offset)
	return netip.AddrFrom4(a)
}

// addrAt6 returns the IPv6 address in base's subnet whose last group spells
// offset's decimal digits, so that the host at .53 is at ::53. offset must
// be below 100.
func addrAt6(base netip.Addr, offset int) netip.Addr {
	a := base.As16()
	a[15] += byte(offset/10<<4 | offset%10)
	return netip.AddrFrom16(a)
}

// serverAddrs maps each world HTTPS server to its host name and addresses,
// IPv4 first.
func (w *World) serverAddrs() map[string][]netip.Addr {
	return map[string][]netip.Addr{
		w.APIHost():      validAddrs(w.API, w.API6),
		w.OtherHost():    validAddrs(w.Other, w.Other6),
		w.AttackerHost(): validAddrs(w.Attacker, w.Attacker6),
	}
}

// validAddrs returns addrs without the zero ones.
func validAddrs(addrs ...netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// netPlan is the addressing openNetwork sets up.
type netPlan struct {
	host     []netip.Prefix // on the host end of the veth
	world    []netip.Prefix // on the world end
	gateways []netip.Addr   // the world's default routes, one per family, go via these
	routes   []netip.Prefix // host routes via the veth, for the stand-ins
	src      netip.Addr     // the host's source address on routes
}

// netPlan lists the world's addresses and routes. Host addresses get their
// subnet's length, so each family has a connected route each way; the
// stand-ins are /32s outside the subnet, reached through routes.
func (w *World) netPlan() netPlan {
	p := netPlan{
		host:     []netip.Prefix{netip.PrefixFrom(w.HostIP, w.prefix.Bits())},
		gateways: []netip.Addr{w.HostIP},
		src:      w.HostIP,
	}
	for _, a := range []netip.Addr{w.DNS.Addr(), w.API, w.Other, w.Attacker} {
		p.world = append(p.world, netip.PrefixFrom(a, w.prefix.Bits()))
	}
	if w.HostIP6.IsValid() {
		p.host = append(p.host, netip.PrefixFrom(w.HostIP6, w.prefix6.Bits()))
		p.gateways = append(p.gateways, w.HostIP6)
		for _, a := range []netip.Addr{w.DNS6.Addr(), w.API6, w.Other6, w.Attacker6} {
			p.world = append(p.world, netip.PrefixFrom(a, w.prefix6.Bits()))
		}
	}
	for _, a := range validAddrs(w.Metadata, w.StrayDNS) {
		p.world = append(p.world, netip.PrefixFrom(a, a.BitLen()))
		p.routes = append(p.routes, netip.PrefixFrom(a, a.BitLen()))
	}
	return p
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
// ("api.<zone>", "api6.<zone>", "evil.<zone>", "other.<zone>" or "metadata",
// which MetadataHost also names), oldest first, over IPv4 and IPv6 alike.
// Requests are filed by the server that received them, whatever their Host
// header says; only at API6 does the TLS server name choose between
// APIHost and API6Host.
func (w *World) Requests(host string) []Request {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == w.MetadataHost() {
		host = metadataServer
	}
	return w.rec.requestsFor(host)
}

// Datagrams returns what the attacker's sinks and the stray DNS sink
// received, oldest first: one entry per UDP datagram, and one per TCP
// connection to a raw TCP sink. Dst tells the sinks apart.
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
