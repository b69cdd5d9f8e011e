//go:build linux

package hostagent

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/keygate/keygate/bpf"
	"github.com/keygate/keygate/internal/nlretry"
	"github.com/keygate/keygate/pkg/cgroup"
	"github.com/keygate/keygate/pkg/jail"
	"github.com/keygate/keygate/pkg/netns"
)

const (
	// adoptGrace is how long a sandbox made by `keygate run` and adopted
	// after an agent restart waits for its caller to reattach before it is
	// ended: its output still reaches the caller's terminal, but only the
	// caller can collect its exit status.
	adoptGrace = 60 * time.Second

	// pollInterval is how often an adopted sandbox is checked for exit:
	// its init is no longer the agent's child, so it cannot be waited for.
	pollInterval = 200 * time.Millisecond

	// maxExitCodes bounds the exit statuses kept for callers that come to
	// collect them after the sandbox was removed.
	maxExitCodes = 1024
)

// startInit starts the sandbox's init with spec and watches it: when it
// exits, the sandbox is torn down and its exit status kept for waiters.
func (a *Agent) startInit(s *sandbox, spec *jail.Spec, stdio []*os.File) error {
	cgfd, err := s.cgroup.Open()
	if err != nil {
		return err
	}
	defer cgfd.Close()
	exitFile, err := os.OpenFile(a.exitPath(s.id), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer exitFile.Close()

	cmd, err := jail.Start(spec, jail.StartOptions{
		Enter:    s.net.Do,
		Cgroup:   cgfd,
		Stdio:    stdio,
		ExitFile: exitFile,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.initPID = cmd.Process.Pid
	s.mu.Unlock()
	if err := a.saveRecord(s); err != nil {
		// Without its pid on record a restarted agent would end the
		// sandbox rather than adopt it; it still runs now.
		a.log.Warn("sandbox record without init pid", "sandbox", s.id, "err", err)
	}
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		a.finish(s, a.waitChild(s, cmd))
	}()
	return nil
}

// waitChild waits for an init this agent started and returns its status.
func (a *Agent) waitChild(s *sandbox, cmd *exec.Cmd) int {
	err := cmd.Wait()
	if code, ok := a.readExit(s.id); ok {
		return code
	}
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() >= 0 {
		return cmd.ProcessState.ExitCode()
	}
	if err != nil {
		a.log.Debug("sandbox init ended", "sandbox", s.id, "err", err)
	}
	return 137 // killed before it could report
}

// finish records a sandbox's exit status and removes it.
func (a *Agent) finish(s *sandbox, code int) {
	a.log.Info("sandbox exited", "sandbox", s.id, "exit_code", code)
	a.keepExitCode(s.id, code)
	s.exited(code)
	a.teardown(s)
}

// keepExitCode remembers a sandbox's status for a caller that reattaches
// after the sandbox is gone.
func (a *Agent) keepExitCode(id string, code int) {
	a.exitMu.Lock()
	defer a.exitMu.Unlock()
	if len(a.exitCodes) >= maxExitCodes {
		clear(a.exitCodes) // old entries are only a convenience
	}
	a.exitCodes[id] = code
}

func (a *Agent) exitCodeOf(id string) (int, bool) {
	a.exitMu.Lock()
	defer a.exitMu.Unlock()
	code, ok := a.exitCodes[id]
	return code, ok
}

// adopt serves again the sandboxes an earlier agent left running (it
// crashed, or was killed), and removes what is left of the others. Run
// before the API starts, so nothing else touches the registry yet.
func (a *Agent) adopt() {
	recs, broken := a.loadRecords()
	known := map[string]bool{}
	for _, id := range broken {
		known[id] = true
		a.removeLeftover(id, nil)
	}
	for _, rec := range recs {
		known[rec.ID] = true
		s, err := a.adoptOne(rec)
		if err != nil {
			a.log.Info("removing sandbox left by an earlier agent", "sandbox", rec.ID, "reason", err)
			a.removeLeftover(rec.ID, &rec)
			continue
		}
		a.log.Info("sandbox adopted", "sandbox", s.id, "addr", s.addr, "persistent", s.persistent)
	}
	a.removeStrays(known)
}

// adoptOne rebuilds a live sandbox from its record.
func (a *Agent) adoptOne(rec sandboxRecord) (*sandbox, error) {
	cg := &cgroup.Group{Path: rec.Cgroup}
	if !initAlive(rec.InitPID, cg) {
		return nil, errInitGone
	}
	s := &sandbox{
		id: rec.ID, block: rec.Block, addr: rec.Addr, addr6: rec.Addr6, cgroup: cg,
		vaults: rec.Vaults, allow: rec.Allow, passthrough: rec.Passthrough, credDomains: rec.CredDomains,
		domains: rec.Domains, open: rec.Open,
		bindings: rec.Bindings, templated: rec.Templated, env: rec.Env, inspect: a.cfg.InspectAll,
		persistent: rec.Persistent, runtime: rec.Runtime, capture: rec.Capture, rootfs: rec.Rootfs,
		created: rec.Created, initPID: rec.InitPID, done: make(chan struct{}),
	}
	if s.bindings == nil {
		s.bindings = map[string]binding{}
	}
	var err error
	if s.cgroupID, err = bpf.CgroupID(cg.Path); err != nil {
		return nil, err
	}
	if s.net, err = netns.Open(a.netConfig(s)); err != nil {
		return nil, err
	}
	if err := a.pool.leaseBlock(s.block); err != nil {
		s.net.NS.Close()
		return nil, err
	}
	// Gives a guard taken over from the earlier agent this agent's program.
	if err := a.guardVeth(s); err != nil {
		s.net.NS.Close()
		a.pool.release(s.block)
		return nil, err
	}
	a.sandboxes.add(s)
	a.watchers.Add(1)
	go func() {
		defer a.watchers.Done()
		a.watchAdopted(s)
	}()
	return s, nil
}

// watchAdopted polls an adopted sandbox until its init exits, and ends a
// run sandbox nobody reattached to within adoptGrace.
func (a *Agent) watchAdopted(s *sandbox) {
	grace := time.NewTimer(adoptGrace)
	defer grace.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if initAlive(s.pid(), s.cgroup) {
				continue
			}
			code, ok := a.readExit(s.id)
			if !ok {
				code = 137
			}
			a.finish(s, code)
			return
		case <-grace.C:
			s.mu.Lock()
			orphan := !s.persistent && !s.attached
			s.mu.Unlock()
			if orphan {
				a.log.Info("ending adopted run sandbox: its caller did not reattach", "sandbox", s.id)
				s.cgroup.Kill()
			}
		case <-a.stop:
			return // Close tears every sandbox down
		}
	}
}

// removeLeftover removes what remains of a sandbox that cannot be adopted.
func (a *Agent) removeLeftover(id string, rec *sandboxRecord) {
	// block -1: the leftover's block is not leased, and releasing it could
	// free one an adopted sandbox holds.
	s := &sandbox{id: id, block: -1}
	if rec != nil {
		s.cgroup = &cgroup.Group{Path: rec.Cgroup}
		s.addr, s.addr6 = rec.Addr, rec.Addr6
	}
	cfg := netns.Config{HostLink: linkPrefix + id, Pin: a.netnsPin(id)}
	if err := netns.Remove(cfg); err != nil {
		a.log.Warn("remove leftover sandbox network", "sandbox", id, "err", err)
	}
	a.teardown(s)
}

// errInitGone means a recorded sandbox's init is no longer running.
var errInitGone = errors.New("its init is no longer running")

// netnsPin is where sandbox id's network namespace is pinned.
func (a *Agent) netnsPin(id string) string { return filepath.Join(a.runDir(), "netns", id) }

// removeStrays removes sandbox cgroups, host links and namespace pins that
// no record accounts for: what an agent that crashed mid-creation left.
func (a *Agent) removeStrays(known map[string]bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, parent := range []string{a.cgroupParentFor(captureCgroup), a.cgroupParentFor(captureTC)} {
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.IsDir() && !known[e.Name()] {
				g := &cgroup.Group{Path: filepath.Join(parent, e.Name())}
				if err := g.Remove(ctx); err != nil {
					a.log.Warn("remove stray sandbox cgroup", "path", g.Path, "err", err)
				}
			}
		}
	}
	links, _ := nlretry.Do(netlink.LinkList)
	for _, l := range links {
		id, ok := strings.CutPrefix(l.Attrs().Name, linkPrefix)
		// Only this agent's links: another agent's sandboxes are not
		// strays, whatever this agent's records say.
		if ok && !known[id] && l.Attrs().Alias == a.linkOwner() {
			netlink.LinkDel(l)
		}
	}
	pins, _ := os.ReadDir(filepath.Join(a.runDir(), "netns"))
	for _, p := range pins {
		if !known[p.Name()] {
			netns.Remove(netns.Config{HostLink: linkPrefix + p.Name(), Pin: a.netnsPin(p.Name())})
		}
	}
}
