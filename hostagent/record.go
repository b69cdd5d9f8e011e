//go:build linux

package hostagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/pkg/cgroup"
)

// sandboxRecord is what the state directory keeps of a live sandbox, so
// that an agent restarted after a crash can serve it again. It holds
// placeholders, never secrets; the state directory is root's alone and
// hidden from every sandbox.
type sandboxRecord struct {
	ID          string             `json:"id"`
	Block       int                `json:"block"`
	Addr        netip.Addr         `json:"addr"`
	Addr6       netip.Addr         `json:"addr6,omitzero"`
	Cgroup      string             `json:"cgroup"`
	Vaults      []string           `json:"vaults"`
	Allow       []string           `json:"allow"`
	Passthrough []string           `json:"passthrough,omitempty"`
	CredDomains []string           `json:"cred_domains,omitempty"`
	Domains     []string           `json:"domains"`
	Open        bool               `json:"open,omitempty"`
	Bindings    map[string]binding `json:"bindings"`
	Templated   []templateBinding  `json:"templated,omitempty"`
	Env         []string           `json:"env"`
	Persistent  bool               `json:"persistent,omitempty"`
	Runtime     string             `json:"runtime"`
	Capture     string             `json:"capture"`
	Rootfs      string             `json:"rootfs,omitempty"`
	Created     time.Time          `json:"created"`
	InitPID     int                `json:"init_pid,omitempty"` // 0 until the init started
}

func (a *Agent) recordDir() string { return filepath.Join(a.cfg.StateDir, "sandboxes") }

func (a *Agent) recordPath(id string) string { return filepath.Join(a.recordDir(), id+".json") }

// exitPath is where a sandbox's init writes its exit status.
func (a *Agent) exitPath(id string) string { return filepath.Join(a.recordDir(), id+".exit") }

// runDir holds runtime files sandboxes may see: the CA bundle, resolv.conf
// and the pinned network namespaces. It is the socket's directory.
func (a *Agent) runDir() string { return filepath.Dir(a.cfg.Socket) }

// saveRecord writes s's record atomically: a crash leaves the old record
// or the new one, never a torn one.
func (a *Agent) saveRecord(s *sandbox) error {
	rec := sandboxRecord{
		ID: s.id, Block: s.block, Addr: s.addr, Addr6: s.addr6, Cgroup: s.cgroup.Path,
		Vaults: s.vaults, Allow: s.allow, Passthrough: s.passthrough, CredDomains: s.credDomains,
		Domains: s.domains, Open: s.open,
		Bindings: s.bindings, Templated: s.templated, Env: s.env, Persistent: s.persistent,
		Runtime: s.runtime, Capture: s.capture, Rootfs: s.rootfs, Created: s.created, InitPID: s.pid(),
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode sandbox record: %w", err)
	}
	if err := os.MkdirAll(a.recordDir(), 0o700); err != nil {
		return fmt.Errorf("sandbox record: %w", err)
	}
	tmp := a.recordPath(s.id) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sandbox record: %w", err)
	}
	if err := os.Rename(tmp, a.recordPath(s.id)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sandbox record: %w", err)
	}
	return nil
}

// removeRecord deletes a sandbox's record and exit file.
func (a *Agent) removeRecord(id string) {
	for _, p := range []string{a.recordPath(id), a.recordPath(id) + ".tmp", a.exitPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("remove sandbox record", "sandbox", id, "err", err)
		}
	}
}

// loadRecords reads every sandbox record in the state directory. A record
// that cannot be read is reported with its ID so that its leftovers can
// still be removed.
func (a *Agent) loadRecords() (recs []sandboxRecord, broken []string) {
	entries, err := os.ReadDir(a.recordDir())
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.recordDir(), e.Name()))
		var rec sandboxRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil || rec.ID != id {
			a.log.Warn("unreadable sandbox record", "sandbox", id, "err", err)
			broken = append(broken, id)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, broken
}

// readExit returns the exit status the init of sandbox id wrote, or
// ok=false if it wrote none (it was killed).
func (a *Agent) readExit(id string) (code int, ok bool) {
	b, err := os.ReadFile(a.exitPath(id))
	if err != nil {
		return 0, false
	}
	_, err = fmt.Sscanf(string(b), "exit %d", &code)
	return code, err == nil
}

// initAlive reports whether pid is still the init of the sandbox whose
// cgroup is cg: alive, and a member of that cgroup (a reused pid is not).
func initAlive(pid int, cg *cgroup.Group) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	// cgroup v2 line: "0::/path/below/the/mount".
	for _, line := range strings.Split(string(b), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return strings.HasSuffix(cg.Path, rel) && rel != "/"
		}
	}
	return false
}
