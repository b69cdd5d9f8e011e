//go:build linux

package hostagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/bpf"
	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/cgroup"
	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/netns"
	"github.com/keygate/keygate/pkg/placeholder"
	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/vault"
)

// linkPrefix starts the name of every host-side veth keygate creates.
const linkPrefix = "kg-"

// Sandbox policy modes (api.SandboxSpec.Mode).
const (
	modeAllowlist = "allowlist"
	modeOpen      = "open"
)

// binding ties one of a sandbox's placeholders to its credential.
type binding struct {
	Vault string `json:"vault"`
	Cred  string `json:"cred"`
}

// templateBinding is a credential whose header template the proxy sets on
// its approved hosts, with the domains it had when the sandbox was made.
type templateBinding struct {
	Vault   string   `json:"vault"`
	Cred    string   `json:"cred"`
	Domains []string `json:"domains"`
}

// sandbox is one live sandbox. The fields above mu are set at creation (or
// adoption after a restart) and never changed, so they are read without
// locking.
type sandbox struct {
	id          string
	block       int        // address pool block
	addr        netip.Addr // the sandbox's IPv4 source address
	addr6       netip.Addr // its IPv6 source address, or zero
	cgroup      *cgroup.Group
	cgroupID    uint64
	net         *netns.Net
	hostIndex   int // interface index of the veth's host end
	vaults      []string
	allow       []string           // --allow patterns
	passthrough []string           // --passthrough patterns: allowed, relayed without termination
	credDomains []string           // every bound credential's approved domains
	domains     []string           // allow, passthrough and credDomains
	open        bool               // open mode: any public destination may be reached
	inspect     bool               // terminate TLS to every host, even without credentials
	bindings    map[string]binding // placeholder ID → credential
	templated   []templateBinding  // credentials with a header template
	env         []string           // VAR=placeholder for each credential
	persistent  bool               // made by sandbox create: lives until rm
	runtime     string
	capture     string
	rootfs      string // runsc: the root it sees; "" = the host's
	created     time.Time

	done         chan struct{} // closed once the sandbox's init has exited
	teardownOnce sync.Once
	stats        sandboxStats

	mu       sync.Mutex
	initPID  int  // host pid of the sandbox init; guarded by mu
	exitCode int  // the init's exit status; guarded by mu, valid once done is closed
	attached bool // a caller waits for this sandbox; guarded by mu
}

var _ proxy.Sandbox = (*sandbox)(nil)

func (s *sandbox) ID() string       { return s.id }
func (s *sandbox) CgroupID() uint64 { return s.cgroupID }

// Allows reports whether the sandbox's policy lets it reach host at all.
func (s *sandbox) Allows(host string) bool { return s.open || domain.MatchAny(s.domains, host) }

// Inspect reports whether TLS to host is terminated although no credential
// is approved for it: whenever the sandbox holds placeholders, so that one
// sent to the wrong host is refused and audited rather than relayed unseen,
// except on the --passthrough domains the operator listed for clients that
// pin certificates. A sandbox without credentials has nothing to protect
// and is spliced. The agent's --inspect-all terminates everything.
func (s *sandbox) Inspect(host string) bool {
	switch {
	case s.inspect:
		return true // --inspect-all: the operator forces termination
	case len(s.bindings) == 0:
		return false
	case domain.MatchAny(s.passthrough, host):
		// Relayed untouched at the operator's word, unless a credential
		// of the sandbox is approved there and so needs it terminated.
		return domain.MatchAny(s.credDomains, host)
	}
	return true
}

// SteeredAtVeth reports whether the sandbox is captured at its veth.
func (s *sandbox) SteeredAtVeth() bool { return s.capture == captureTC }

func (s *sandbox) info() api.Sandbox {
	mode := modeAllowlist
	if s.open {
		mode = modeOpen
	}
	info := api.Sandbox{
		ID: s.id, Address: s.addr.String(), Vaults: s.vaults, Allow: s.allow, Passthrough: s.passthrough,
		Runtime: s.runtime, Capture: s.capture, Mode: mode, Persistent: s.persistent,
		Created: s.created, Stats: s.stats.api(),
	}
	if s.addr6.IsValid() {
		info.Address6 = s.addr6.String()
	}
	return info
}

// pid returns the host pid of the sandbox's init.
func (s *sandbox) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initPID
}

// exited records the init's exit status and wakes every waiter.
func (s *sandbox) exited(code int) {
	s.mu.Lock()
	s.exitCode = code
	s.mu.Unlock()
	close(s.done)
}

// registry indexes live sandboxes by ID, address and placeholder.
type registry struct {
	mu           sync.RWMutex
	byID         map[string]*sandbox     // guarded by mu
	byAddr       map[netip.Addr]*sandbox // v4 and v6 addresses; guarded by mu
	placeholders map[string]string       // placeholder ID → sandbox ID, every sandbox's; guarded by mu
}

func newRegistry() *registry {
	return &registry{
		byID:         make(map[string]*sandbox),
		byAddr:       make(map[netip.Addr]*sandbox),
		placeholders: make(map[string]string),
	}
}

func (r *registry) add(s *sandbox) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[s.id] = s
	r.byAddr[s.addr] = s
	if s.addr6.IsValid() {
		r.byAddr[s.addr6] = s
	}
	for id := range s.bindings {
		r.placeholders[id] = s.id
	}
}

// remove unregisters s and reports whether it was registered.
func (r *registry) remove(s *sandbox) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.byID[s.id]; !ok {
		return false
	}
	delete(r.byID, s.id)
	delete(r.byAddr, s.addr)
	delete(r.byAddr, s.addr6)
	for id := range s.bindings {
		delete(r.placeholders, id)
	}
	return true
}

func (r *registry) byIDOf(id string) (*sandbox, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.byID[id]
	return s, ok
}

func (r *registry) bySource(addr netip.Addr) (*sandbox, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.byAddr[addr.Unmap()]
	return s, ok
}

func (r *registry) placeholderOwner(id string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	owner, ok := r.placeholders[id]
	return owner, ok
}

func (r *registry) list() []*sandbox {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*sandbox, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *sandbox) int { return a.created.Compare(b.created) })
	return out
}

// sandboxPlan is a validated sandbox spec, resolved against the store.
type sandboxPlan struct {
	vaults      []string
	allow       []string
	passthrough []string
	open        bool
	runtime     string
	capture     string
	rootfs      string
	creds       []vault.Credential
}

// errUnsupported marks requests for features this build does not have.
var errUnsupported = errors.New("not supported")

// plan checks a sandbox spec before anything is created: the runtime and
// capture mode must be available, every vault must exist and be live, and
// every --allow pattern must be valid.
func (a *Agent) plan(spec api.SandboxSpec) (*sandboxPlan, error) {
	p := &sandboxPlan{vaults: spec.Vaults}
	if err := a.planRuntime(p, spec.Runtime, spec.Capture); err != nil {
		return nil, err
	}
	if spec.Rootfs != "" {
		if p.runtime != runtimeRunsc {
			return nil, fmt.Errorf("%w: --rootfs needs --runtime runsc (native sandboxes see the host's root)", vault.ErrInvalid)
		}
		if fi, err := os.Stat(spec.Rootfs); err != nil || !fi.IsDir() || !filepath.IsAbs(spec.Rootfs) {
			return nil, fmt.Errorf("%w: --rootfs %q: need an absolute path to a directory", vault.ErrInvalid, spec.Rootfs)
		}
		p.rootfs = spec.Rootfs
	}
	switch spec.Mode {
	case "", modeAllowlist:
	case modeOpen:
		p.open = true
	default:
		return nil, fmt.Errorf("%w: mode %q: want allowlist or open", vault.ErrInvalid, spec.Mode)
	}
	var err error
	if p.allow, err = domainPatterns("--allow", spec.Allow); err != nil {
		return nil, err
	}
	if p.passthrough, err = domainPatterns("--passthrough", spec.Passthrough); err != nil {
		return nil, err
	}
	envs := map[string]string{}
	for _, v := range spec.Vaults {
		info, err := a.store.Vault(v)
		if err != nil {
			return nil, err
		}
		if info.Archived {
			return nil, fmt.Errorf("vault %q: %w", v, vault.ErrArchived)
		}
		creds, err := a.store.Credentials(v)
		if err != nil {
			return nil, err
		}
		for _, c := range creds {
			if prev, ok := envs[c.Env]; ok {
				return nil, fmt.Errorf("%w: vaults %q and %q both set %s", vault.ErrInvalid, prev, v, c.Env)
			}
			envs[c.Env] = v
		}
		p.creds = append(p.creds, creds...)
	}
	return p, nil
}

// domainPatterns validates the domain patterns given with flag and returns
// them normalized.
func domainPatterns(flag string, pats []string) ([]string, error) {
	var out []string
	for _, pat := range pats {
		if err := domain.ValidatePattern(pat); err != nil {
			return nil, fmt.Errorf("%s %w", flag, err)
		}
		out = append(out, domain.Normalize(pat))
	}
	return out, nil
}

// planRuntime checks the runtime and capture mode and picks the default
// capture for the runtime: cgroup for native, tc for runsc (whose netstack
// sockets the cgroup hooks never see).
func (a *Agent) planRuntime(p *sandboxPlan, runtime, capture string) error {
	switch runtime {
	case "", runtimeNative:
		p.runtime = runtimeNative
	case runtimeRunsc:
		p.runtime = runtimeRunsc
		if _, err := os.Stat(a.cfg.RunscPath); err != nil {
			return fmt.Errorf("runtime runsc: %w: %s not found (scripts/install-runsc.sh installs it)",
				errUnsupported, a.cfg.RunscPath)
		}
	default:
		return fmt.Errorf("%w: runtime %q: want native or runsc", vault.ErrInvalid, runtime)
	}
	switch capture {
	case "":
		p.capture = captureCgroup
		if p.runtime == runtimeRunsc {
			p.capture = captureTC
		}
	case captureCgroup, captureTC:
		p.capture = capture
	default:
		return fmt.Errorf("%w: capture %q: want cgroup or tc", vault.ErrInvalid, capture)
	}
	if p.capture == captureTC && !a.tcReady() {
		return fmt.Errorf("capture tc: %w on this agent (its steering programs did not load)", errUnsupported)
	}
	return nil
}

// createSandbox builds a sandbox's cgroup, network and placeholders,
// records it in the state directory and registers it, so that by the time
// its first process runs, capture, resolver and proxy all know it, and a
// restarted agent can find it. On error nothing is left behind.
func (a *Agent) createSandbox(p *sandboxPlan, persistent bool) (s *sandbox, err error) {
	block, err := a.pool.lease()
	if err != nil {
		return nil, err
	}
	s = &sandbox{
		id:          newID(),
		block:       block,
		addr:        a.pool.sandbox(block).Addr(),
		addr6:       a.pool.sandbox6(block).Addr(),
		vaults:      p.vaults,
		allow:       p.allow,
		passthrough: p.passthrough,
		open:        p.open,
		inspect:     a.cfg.InspectAll,
		bindings:    make(map[string]binding),
		persistent:  persistent,
		runtime:     p.runtime,
		capture:     p.capture,
		rootfs:      p.rootfs,
		created:     time.Now(),
		done:        make(chan struct{}),
	}
	defer func() {
		if err != nil {
			a.teardown(s)
		}
	}()

	s.domains = append(slices.Clone(p.allow), p.passthrough...)
	for _, c := range p.creds {
		ph, err := placeholder.New(c.Prefix)
		if err != nil {
			return nil, err
		}
		s.bindings[placeholder.Find(ph)[0].ID] = binding{Vault: c.Vault, Cred: c.Name}
		if c.Header != "" {
			s.templated = append(s.templated, templateBinding{Vault: c.Vault, Cred: c.Name, Domains: c.Domains})
		}
		s.env = append(s.env, c.Env+"="+ph)
		s.credDomains = append(s.credDomains, c.Domains...)
		s.domains = append(s.domains, c.Domains...)
	}

	if s.cgroup, err = cgroup.Create(filepath.Join(a.cgroupParentFor(s.capture), s.id)); err != nil {
		return nil, err
	}
	if s.cgroupID, err = bpf.CgroupID(s.cgroup.Path); err != nil {
		return nil, fmt.Errorf("cgroup id: %w", err)
	}
	if s.net, err = netns.Create(a.netConfig(s)); err != nil {
		return nil, err
	}
	if err := a.guardVeth(s); err != nil {
		return nil, err
	}
	if err := a.saveRecord(s); err != nil {
		return nil, err
	}
	a.sandboxes.add(s)
	a.metrics.SandboxesCreated.Inc()
	a.metrics.SandboxCreateSeconds.Observe(time.Since(s.created).Seconds())
	a.log.Info("sandbox created", "sandbox", s.id, "addr", s.addr,
		"vaults", s.vaults, "credentials", len(s.bindings), "persistent", persistent)
	a.auditSandbox(s, audit.KindSandboxCreate)
	return s, nil
}

// netConfig is the network of sandbox s, from its address block.
func (a *Agent) netConfig(s *sandbox) netns.Config {
	return netns.Config{
		HostLink:     linkPrefix + s.id,
		HostAddr:     a.pool.host(s.block),
		SandboxAddr:  a.pool.sandbox(s.block),
		HostAddr6:    a.pool.host6(s.block),
		SandboxAddr6: a.pool.sandbox6(s.block),
		Pin:          a.netnsPin(s.id),
		Owner:        a.linkOwner(),
	}
}

// linkOwner marks this agent's host links (their alias): several agents
// can share a host, and one must never remove another's sandboxes.
func (a *Agent) linkOwner() string { return "keygate " + a.cfg.CgroupParent }

// teardown removes everything a sandbox holds: its processes, cgroup,
// network, pins, record and address lease. It is safe on a partly created
// sandbox and idempotent.
func (a *Agent) teardown(s *sandbox) {
	s.teardownOnce.Do(func() { a.teardownOnce(s) })
}

func (a *Agent) teardownOnce(s *sandbox) {
	if a.sandboxes.remove(s) {
		a.metrics.SandboxesRemoved.Inc()
		a.auditSandbox(s, audit.KindSandboxRemove)
	}
	a.pins.DropSandbox(s.id)
	if a.proxy != nil {
		a.proxy.SandboxGone(s.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.cgroup != nil {
		if err := s.cgroup.Remove(ctx); err != nil {
			a.log.Error("remove sandbox cgroup", "sandbox", s.id, "err", err)
		}
	}
	a.cleanupRunsc(s)
	if s.net != nil {
		if idx, err := s.net.HostIndex(); err == nil && a.guard != nil {
			if err := a.guard.Detach(idx); err != nil {
				a.log.Warn("detach veth guard", "sandbox", s.id, "err", err)
			}
		}
		if err := s.net.Close(); err != nil {
			a.log.Error("remove sandbox network", "sandbox", s.id, "err", err)
		}
	}
	a.removeRecord(s.id)
	a.pool.release(s.block)
}

func newID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// stdioFiles wraps received descriptors; closed after the sandbox starts.
func stdioFiles(fds []int) []*os.File {
	names := []string{"stdin", "stdout", "stderr"}
	out := make([]*os.File, len(fds))
	for i, fd := range fds {
		out[i] = os.NewFile(uintptr(fd), names[i%3])
	}
	return out
}

// guardVeth attaches the veth guard to the host end of s's veth: from
// there on only packets from s's own addresses to the agent's service
// addresses leave it, whatever happens to the cgroup programs.
func (a *Agent) guardVeth(s *sandbox) error {
	idx, err := s.net.HostIndex()
	if err != nil {
		return err
	}
	s.hostIndex = idx
	v := bpf.GuardVeth{
		Sandbox4: s.addr, Sandbox6: s.addr6,
		Host4: a.pool.host(s.block).Addr(), Host6: a.pool.host6(s.block).Addr(),
	}
	if s.capture == captureTC {
		v.Mode = bpf.CaptureTC
	}
	if err := a.guard.Attach(idx, v); err != nil {
		return fmt.Errorf("guard veth: %w", err)
	}
	return nil
}

// cgroupParentFor is the parent cgroup of sandboxes captured in mode:
// cgroup-mode sandboxes live under the parent the socket programs are
// attached to; tc-mode ones under a sibling the programs never see, so
// that their traffic meets only the veth programs.
func (a *Agent) cgroupParentFor(mode string) string {
	if mode == captureTC {
		return a.cfg.CgroupParent + "-tc"
	}
	return a.cfg.CgroupParent
}
