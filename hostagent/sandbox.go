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

// binding ties one of a sandbox's placeholders to its credential.
type binding struct {
	vault, cred string
}

// templateBinding is a credential whose header template the proxy sets on
// its approved hosts, with the domains it had when the sandbox was made.
type templateBinding struct {
	vault, cred string
	domains     []string
}

// sandbox is one live sandbox. Its fields are set at creation and not
// changed afterwards, so they are read without locking.
type sandbox struct {
	id        string
	block     int        // address pool block
	addr      netip.Addr // the sandbox's source address
	cgroup    *cgroup.Group
	cgroupID  uint64
	net       *netns.Net
	vaults    []string
	allow     []string           // --allow patterns
	domains   []string           // allow plus every bound credential's approved domains
	bindings  map[string]binding // placeholder ID → credential
	templated []templateBinding  // credentials with a header template
	env       []string           // VAR=placeholder for each credential
	created   time.Time
}

var _ proxy.Sandbox = (*sandbox)(nil)

func (s *sandbox) ID() string              { return s.id }
func (s *sandbox) CgroupID() uint64        { return s.cgroupID }
func (s *sandbox) Allows(host string) bool { return domain.MatchAny(s.domains, host) }

func (s *sandbox) info() api.Sandbox {
	return api.Sandbox{
		ID: s.id, Address: s.addr.String(), Vaults: s.vaults, Allow: s.allow,
		Runtime: "native", Capture: "cgroup", Created: s.created,
	}
}

// registry indexes live sandboxes by ID, address and placeholder.
type registry struct {
	mu           sync.RWMutex
	byID         map[string]*sandbox // guarded by mu
	byAddr       map[netip.Addr]*sandbox
	placeholders map[string]string // placeholder ID → sandbox ID, every sandbox's
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
	for id := range s.bindings {
		delete(r.placeholders, id)
	}
	return true
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

// sandboxPlan is a validated run request, resolved against the store.
type sandboxPlan struct {
	vaults []string
	allow  []string
	creds  []vault.Credential
}

// plan checks a run request before anything is created: every vault must
// exist and be live, and every --allow pattern must be valid.
func (a *Agent) plan(req api.RunRequest) (*sandboxPlan, error) {
	if req.Runtime != "" && req.Runtime != "native" {
		return nil, fmt.Errorf("runtime %q: %w (this build supports native)", req.Runtime, errUnsupported)
	}
	if req.Capture != "" && req.Capture != "cgroup" {
		return nil, fmt.Errorf("capture %q: %w (this build supports cgroup)", req.Capture, errUnsupported)
	}
	if len(req.Argv) == 0 {
		return nil, fmt.Errorf("%w: no command given", vault.ErrInvalid)
	}
	p := &sandboxPlan{vaults: req.Vaults}
	for _, pat := range req.Allow {
		if err := domain.ValidatePattern(pat); err != nil {
			return nil, fmt.Errorf("--allow %w", err)
		}
		p.allow = append(p.allow, domain.Normalize(pat))
	}
	envs := map[string]string{}
	for _, v := range req.Vaults {
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

// errUnsupported marks requests for features this build does not have.
var errUnsupported = errors.New("not supported")

// createSandbox builds a sandbox's cgroup, network and placeholders and
// registers it, so that by the time its first process runs, capture,
// resolver and proxy all know it. On error nothing is left behind.
func (a *Agent) createSandbox(p *sandboxPlan) (s *sandbox, err error) {
	block, err := a.pool.lease()
	if err != nil {
		return nil, err
	}
	s = &sandbox{
		id:       newID(),
		block:    block,
		addr:     a.pool.sandbox(block).Addr(),
		vaults:   p.vaults,
		allow:    p.allow,
		bindings: make(map[string]binding),
		created:  time.Now(),
	}
	defer func() {
		if err != nil {
			a.teardown(s)
		}
	}()

	s.domains = append(s.domains, p.allow...)
	for _, c := range p.creds {
		ph, err := placeholder.New(c.Prefix)
		if err != nil {
			return nil, err
		}
		s.bindings[placeholder.Find(ph)[0].ID] = binding{vault: c.Vault, cred: c.Name}
		if c.Header != "" {
			s.templated = append(s.templated, templateBinding{vault: c.Vault, cred: c.Name, domains: c.Domains})
		}
		s.env = append(s.env, c.Env+"="+ph)
		s.domains = append(s.domains, c.Domains...)
	}

	if s.cgroup, err = cgroup.Create(a.cfg.CgroupParent + "/" + s.id); err != nil {
		return nil, err
	}
	if s.cgroupID, err = bpf.CgroupID(s.cgroup.Path); err != nil {
		return nil, fmt.Errorf("cgroup id: %w", err)
	}
	s.net, err = netns.Create(netns.Config{
		HostLink:    linkPrefix + s.id,
		HostAddr:    a.pool.host(block),
		SandboxAddr: a.pool.sandbox(block),
	})
	if err != nil {
		return nil, err
	}
	a.sandboxes.add(s)
	a.log.Info("sandbox created", "sandbox", s.id, "addr", s.addr,
		"vaults", s.vaults, "credentials", len(s.bindings))
	a.auditSandbox(s, audit.KindSandboxCreate)
	return s, nil
}

// teardown removes everything a sandbox holds; it is safe on a partly
// created sandbox and idempotent.
func (a *Agent) teardown(s *sandbox) {
	if a.sandboxes.remove(s) {
		a.auditSandbox(s, audit.KindSandboxRemove)
	}
	a.pins.DropSandbox(s.id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.cgroup != nil {
		if err := s.cgroup.Remove(ctx); err != nil {
			a.log.Error("remove sandbox cgroup", "sandbox", s.id, "err", err)
		}
	}
	if s.net != nil {
		if err := s.net.Close(); err != nil {
			a.log.Error("remove sandbox network", "sandbox", s.id, "err", err)
		}
	}
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
