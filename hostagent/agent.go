//go:build linux

package hostagent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/bpf"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/ca"
	"github.com/keygate/keygate/pkg/cgroup"
	"github.com/keygate/keygate/pkg/lograte"
	"github.com/keygate/keygate/pkg/metrics"
	"github.com/keygate/keygate/pkg/pin"
	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/resolver"
	"github.com/keygate/keygate/pkg/schedule"
	"github.com/keygate/keygate/pkg/vault"
)

// Agent is a running keygated.
type Agent struct {
	cfg Config
	log *slog.Logger

	store        vault.Store
	etcd         *vault.Etcd // the store, when it is the fleet engine; else nil
	etcdPrefix   string      // the fleet engine's key prefix
	unwatch      func()      // stops the store watch; nil until set
	creds        *credCache  // decrypted credentials; invalidated by every API change
	audit        audit.Log
	auditErrs    atomic.Int64     // hot-path audit appends that failed
	auditLimit   *lograte.Limiter // their log records, at most one a second
	metrics      *metrics.Metrics
	denials      denialRing
	leaves       *ca.Leaves
	started      time.Time
	sched        *schedule.Scheduler // nil until started
	schedStore   schedule.Store
	ca           *ca.CA
	bundle       string // sandbox trust bundle: system roots + host CA
	resolv       string // resolv.conf shown to sandboxes
	pool         *addrPool
	pins         *pin.Table
	sandboxes    *registry
	capture      *bpf.CgroupCapture
	parent       *cgroup.Group
	serviceAdded []*netlink.Addr // the service addresses put on lo
	guard        *bpf.Guard      // the veth guard; nil until attachCapture
	tcOK         bool            // tc capture's sockets and routing are in place
	denyAudit    *denialAuditor  // audits the capture programs' refusals; nil until started
	steerUndo    func() error    // removes the steering policy route, or nil

	proxy     *proxy.Proxy
	resolver  *resolver.Resolver
	api       *http.Server
	listeners []net.Listener   // proxy, resolver TCP, API; closed by Close
	udp       []net.PacketConn // the resolver's UDP sockets, v4 and v6

	runs     sync.WaitGroup // live runs; Close waits for their teardown
	watchers sync.WaitGroup // one per sandbox init; Close waits for them
	stop     chan struct{}  // closed by Close: every run ends its sandbox

	exitMu    sync.Mutex
	exitCodes map[string]int // exit statuses of removed sandboxes, for late waiters; guarded by exitMu
}

// Start brings the agent up: store, CA, service address, resolver, proxy,
// capture programs, control API. On error, everything started is undone.
func Start(cfg Config) (_ *Agent, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		pool:       newPool(cfg),
		sandboxes:  newRegistry(),
		stop:       make(chan struct{}),
		exitCodes:  make(map[string]int),
		metrics:    metrics.New(),
		auditLimit: lograte.New(time.Second),
		started:    time.Now(),
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()

	steps := []struct {
		name string
		fn   func() error
	}{
		{"open state", a.openState},
		{"add service address", a.addServiceAddr},
		{"start resolver", a.startResolver},
		{"start proxy", a.startProxy},
		{"attach capture programs", a.attachCapture},
		{"start tc steering", a.startSteering},
		{"audit capture refusals", a.startDenialAudit},
		{"start metrics", a.startMetrics},
		{"start scheduler", a.startScheduler},
		{"start control API", a.startAPI},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	a.log.Info("keygated ready", "socket", cfg.Socket, "service", a.pool.service(),
		"sandbox_cidr", cfg.SandboxCIDR, "upstream_dns", cfg.UpstreamDNS)
	return a, nil
}

// openState opens the vault store and the host CA, and writes the files
// sandboxes are shown.
func (a *Agent) openState() error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return err
	}
	key, err := vault.LoadOrCreateMasterKey(a.cfg.MasterKeyFile)
	if err != nil {
		return err
	}
	if err := a.openStores(key); err != nil {
		return err
	}
	a.creds = newCredCache(a.store, a.cfg.CredentialRefresh, a.cfg.RetiredRedaction)
	// Every change, made here or (fleet) on another host, marks the cached
	// credentials stale at once: the next request reads the store. Archive
	// and removal drop what is held of the purged secrets.
	a.unwatch = a.store.Watch(func(ch vault.Change) {
		switch ch.Kind {
		case vault.ChangeArchive:
			a.creds.forget(ch.Vault, "")
		case vault.ChangeRemove:
			a.creds.forget(ch.Vault, ch.Credential)
		default:
			a.creds.invalidate()
		}
	})
	if a.ca, err = ca.LoadOrCreate(filepath.Join(a.cfg.StateDir, "ca")); err != nil {
		return err
	}

	// Files bind-mounted into every sandbox live outside the state dir,
	// which sandboxes never see.
	share := filepath.Join(filepath.Dir(a.cfg.Socket), "share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		return err
	}
	a.bundle = filepath.Join(share, "ca-bundle.pem")
	if err := a.ca.WriteBundle(a.bundle); err != nil {
		return err
	}
	a.resolv = filepath.Join(share, "resolv.conf")
	conf := fmt.Sprintf("# written by keygated: every DNS query is answered by keygate\nnameserver %s\n", a.pool.service())
	return os.WriteFile(a.resolv, []byte(conf), 0o644)
}

// addServiceAddr puts the agent's service addresses on the loopback link
// as host routes (/32, /128), so sandboxes reach the proxy and resolver
// through their veth and nothing listens on the host's other addresses.
// (Loopback rather than a dummy link: not every kernel has the dummy
// driver.)
func (a *Agent) addServiceAddr() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	addrs := []*netlink.Addr{{IPNet: hostNet(a.pool.service()), Label: "lo:keygate"}}
	if svc6 := a.pool.service6(); svc6.IsValid() {
		// No duplicate address detection: the address must be usable at
		// once, and it is unique to this host by construction.
		addrs = append(addrs, &netlink.Addr{IPNet: hostNet(svc6), Flags: unix.IFA_F_NODAD})
	}
	for _, addr := range addrs {
		// An address left by an agent that did not stop cleanly is reused.
		if err := netlink.AddrReplace(lo, addr); err != nil {
			return fmt.Errorf("address %s on lo: %w", addr.IP, err)
		}
		a.serviceAdded = append(a.serviceAdded, addr)
	}
	return nil
}

// serviceAddr is the IPv4 service address with port.
func (a *Agent) serviceAddr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(a.pool.service(), port)
}

// serviceAddr6 is the IPv6 service address with port, or the zero value.
func (a *Agent) serviceAddr6(port uint16) netip.AddrPort {
	if svc6 := a.pool.service6(); svc6.IsValid() {
		return netip.AddrPortFrom(svc6, port)
	}
	return netip.AddrPort{}
}

// serviceAddrs are the addresses a service listens on: IPv4, and IPv6 if on.
func (a *Agent) serviceAddrs(port uint16) []netip.AddrPort {
	out := []netip.AddrPort{a.serviceAddr(port)}
	if v6 := a.serviceAddr6(port); v6.IsValid() {
		out = append(out, v6)
	}
	return out
}

func (a *Agent) startResolver() error {
	a.pins = pin.New(pin.Config{})
	r, err := resolver.New(resolver.Config{
		Upstream:     a.cfg.UpstreamDNS,
		Sandboxes:    resolverView{a.sandboxes},
		Pins:         a.pins,
		AllowPrivate: a.cfg.AllowPrivate,
		IPv6:         a.pool.service6().IsValid(),
		OnDeny:       a.auditDNSDenial,
		Logger:       a.log,
	})
	if err != nil {
		return err
	}
	a.resolver = r
	for _, addr := range a.serviceAddrs(a.cfg.DNSPort) {
		udp, err := net.ListenPacket("udp", addr.String())
		if err != nil {
			return err
		}
		a.udp = append(a.udp, udp)
		tcp, err := net.Listen("tcp", addr.String())
		if err != nil {
			return err
		}
		a.listeners = append(a.listeners, tcp)
		go func() {
			if err := r.Serve(udp, tcp); err != nil && !errors.Is(err, resolver.ErrClosed) {
				a.log.Error("resolver stopped", "addr", addr, "err", err)
			}
		}()
	}
	return nil
}

func (a *Agent) startProxy() error {
	roots, err := upstreamRoots(a.cfg.UpstreamCA)
	if err != nil {
		return err
	}
	a.leaves = a.ca.NewLeaves(ca.LeafConfig{})
	p, err := proxy.New(proxy.Config{
		Sandboxes: func(src netip.Addr) (proxy.Sandbox, bool) {
			sb, ok := a.sandboxes.bySource(src)
			return sb, ok
		},
		OrigDst:       a.origDst,
		Pins:          a.pins,
		Certs:         a.leaves,
		Credentials:   &credentials{reg: a.sandboxes, cache: a.creds},
		UpstreamRoots: roots,
		Logger:        a.log.With("subsystem", "proxy"),
		OnDecision:    a.auditDecision,

		MaxRequestsPerSandbox: a.cfg.MaxRequestsPerSandbox,
	})
	if err != nil {
		return err
	}
	a.proxy = p
	for _, addr := range a.serviceAddrs(a.cfg.ProxyPort) {
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			return err
		}
		a.listeners = append(a.listeners, ln)
		go func() {
			if err := p.Serve(ln); err != nil {
				a.log.Error("proxy stopped", "addr", addr, "err", err)
			}
		}()
	}
	return nil
}

func (a *Agent) origDst(src netip.AddrPort) (proxy.OrigDst, error) {
	od, err := a.capture.TakeConn(src)
	if err != nil {
		return proxy.OrigDst{}, err
	}
	return proxy.OrigDst{Dst: od.Dst, CgroupID: od.CgroupID}, nil
}

// upstreamRoots returns the system roots plus the PEM certificates in
// extra, if given.
func upstreamRoots(extra string) (*x509.CertPool, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if extra == "" {
		return roots, nil
	}
	pem, err := os.ReadFile(extra)
	if err != nil {
		return nil, fmt.Errorf("read upstream CA: %w", err)
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("upstream CA %s: no PEM certificate found", extra)
	}
	return roots, nil
}

// attachCapture creates the parent cgroup of all sandboxes, adopts the
// sandboxes a previous agent left running (removing the rest), and
// attaches the capture programs to the parent.
func (a *Agent) attachCapture() error {
	var err error
	if a.parent, err = cgroup.Create(a.cfg.CgroupParent); err != nil {
		return err
	}
	if _, err = cgroup.Create(a.cgroupParentFor(captureTC)); err != nil {
		return err
	}
	// The guard is loaded first: adopted sandboxes' veths get its current
	// program before they are served again.
	a.guard, err = bpf.LoadGuard(bpf.GuardConfig{
		Service4: a.pool.service(), Service6: a.pool.service6(), PinDir: a.pinDir(),
	})
	if err != nil {
		return fmt.Errorf("load veth guard: %w", err)
	}
	a.adopt()
	a.capture, err = bpf.LoadCgroup(bpf.CgroupConfig{
		Proxy:     a.serviceAddr(a.cfg.ProxyPort),
		Resolver:  a.serviceAddr(a.cfg.DNSPort),
		Proxy6:    a.serviceAddr6(a.cfg.ProxyPort),
		Resolver6: a.serviceAddr6(a.cfg.DNSPort),
		PinDir:    a.pinDir(),
	})
	if err != nil {
		return err
	}
	return a.capture.Attach(a.cfg.CgroupParent)
}

// pinDir is where this agent's BPF maps and links are pinned, so capture
// stays in force while it is down. One per cgroup parent: agents that
// share a host (tests, a fleet host running two) keep apart.
func (a *Agent) pinDir() string {
	return filepath.Join("/sys/fs/bpf/keygate", filepath.Base(a.cfg.CgroupParent))
}

// Close stops the agent: ends every sandbox, detaches the capture
// programs, stops the servers and removes the service address. It is safe
// on a partly started agent.
func (a *Agent) Close() error {
	var errs []error
	if a.api != nil {
		errs = append(errs, a.api.Close())
	}
	if a.sched != nil {
		// Before the stop: runs it started end while the audit log and
		// store are still open.
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, a.sched.Stop(sctx))
		scancel()
	}
	close(a.stop)
	a.runs.Wait()
	for _, s := range a.sandboxes.list() {
		a.teardown(s)
	}
	a.watchers.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if a.proxy != nil {
		errs = append(errs, a.proxy.Shutdown(ctx))
	}
	if a.resolver != nil {
		errs = append(errs, a.resolver.Shutdown(ctx))
	}
	for _, ln := range a.listeners {
		ln.Close()
	}
	for _, udp := range a.udp {
		udp.Close()
	}
	if a.denyAudit != nil {
		a.denyAudit.close()
	}
	// A clean stop detaches capture for good: every sandbox has ended.
	// (A crash leaves the pinned programs in force, failing closed.)
	if a.capture != nil {
		errs = append(errs, a.capture.Unpin(), a.capture.Close())
	}
	if a.guard != nil {
		errs = append(errs, a.guard.Unpin(), a.guard.Close())
	}
	if a.steerUndo != nil {
		errs = append(errs, a.steerUndo())
	}
	if a.parent != nil {
		os.Remove(a.parent.Path)
		os.Remove(a.cgroupParentFor(captureTC))
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		for _, addr := range a.serviceAdded {
			errs = append(errs, netlink.AddrDel(lo, addr))
		}
	}
	if a.unwatch != nil {
		a.unwatch()
	}
	// The schedule store and the audit log may share the vault store's
	// etcd connection: they close first.
	if a.schedStore != nil {
		errs = append(errs, a.schedStore.Close())
	}
	if a.audit != nil {
		errs = append(errs, a.audit.Close())
	}
	if a.store != nil {
		errs = append(errs, a.store.Close())
	}
	os.Remove(a.cfg.Socket)
	return errors.Join(errs...)
}

// hostNet is addr as a host route: /32 or /128.
func hostNet(addr netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())}
}

// newPool is the address pool cfg describes.
func newPool(cfg Config) *addrPool {
	p := newAddrPool(cfg.SandboxCIDR)
	if cfg.SandboxCIDR6.IsValid() {
		p.withIPv6(cfg.SandboxCIDR6)
	}
	return p
}
