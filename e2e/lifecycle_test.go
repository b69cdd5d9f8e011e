//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/keygate/keygate/internal/nlretry"
)

// TestPersistentSandbox drives sandbox create, exec, list and rm.
func TestPersistentSandbox(t *testing.T) {
	w, a, key := credentialedAgent(t)

	id := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
	if len(id) != 8 {
		t.Fatalf("sandbox create printed %q, want an ID", id)
	}

	exec := func(script string) (string, string, int) {
		return a.kg("", "sandbox", "exec", id, "--", "sh", "-c", script)
	}
	out, errOut, code := exec(`printf %s "$API_KEY"`)
	if code != 0 || !strings.HasPrefix(out, "kgph_") {
		t.Fatalf("exec: exit %d, out %q, err %q", code, out, errOut)
	}
	placeholder := out

	out, errOut, code = exec(`curl -sS -m 10 -o /dev/null -w '%{http_code}' https://` + w.APIHost() + `/p -H "Authorization: Bearer $API_KEY"`)
	if code != 0 || out != "200" {
		t.Fatalf("curl in sandbox: exit %d, %q, %s", code, out, errOut)
	}
	if reqs := w.Requests(w.APIHost()); len(reqs) == 0 || reqs[len(reqs)-1].Header.Get("Authorization") != "Bearer "+key {
		t.Fatal("API did not receive the real key")
	}

	// State persists between execs: same placeholder, same /tmp.
	exec("echo kept > /tmp/state")
	if out, _, _ := exec(`cat /tmp/state; printf %s "$API_KEY"`); out != "kept\n"+placeholder {
		t.Fatalf("second exec saw %q", out)
	}
	if _, _, code := exec("exit 3"); code != 3 {
		t.Fatalf("exec exit status %d, want 3", code)
	}
	// Exec'd commands are as unprivileged as run's.
	if out, _, _ := exec("id -u; grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status"); !strings.Contains(out, "65534") ||
		!strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "CapEff:\t0000000000000000") {
		t.Fatalf("exec'd command privileges: %q", out)
	}

	var sbs []struct {
		ID         string
		Persistent bool
		Vaults     []string
	}
	if err := json.Unmarshal([]byte(a.mustKG("", "sandbox", "list", "--json")), &sbs); err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 1 || sbs[0].ID != id || !sbs[0].Persistent || !slices.Equal(sbs[0].Vaults, []string{"v"}) {
		t.Fatalf("sandbox list: %+v", sbs)
	}

	a.mustKG("", "sandbox", "rm", id)
	if _, errOut, code := exec("true"); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("exec after rm: exit %d, %q", code, errOut)
	}
	a.stop()
	assertNoResidue(t, a)
	if strings.Contains(a.log.String(), key) {
		t.Fatal("agent log holds the secret")
	}
}

// TestAgentCrashFailsClosed kills keygated with SIGKILL while a sandbox
// runs: the sandbox's requests fail and reach nothing while the agent is
// down; the restarted agent adopts the sandbox, its requests work again,
// and `keygate run` reattaches and reports the command's exit status.
func TestAgentCrashFailsClosed(t *testing.T) {
	w, a, key := credentialedAgent(t)

	sb := a.startInteractive(t, []string{"--vault", "v"},
		`while read x; do curl -sS -m 3 -o /dev/null -w '%{http_code}\n' https://`+w.APIHost()+`/crash `+
			`-H "Authorization: Bearer $API_KEY" 2>&1; echo END; done; exit 4`)
	if out := sb.do(t, "go"); out != "200" {
		t.Fatalf("before the crash: %q", out)
	}

	a.kill()
	before := len(w.Requests(w.APIHost()))
	out := sb.do(t, "go")
	if strings.HasSuffix(out, "200") {
		t.Fatalf("request succeeded with the agent down: %q", out)
	}
	if n := len(w.Requests(w.APIHost())) - before; n != 0 {
		t.Fatalf("the API received %d requests while the agent was down", n)
	}

	a.start()
	if out := sb.do(t, "go"); out != "200" {
		t.Fatalf("after the restart: %q\nagent log:\n%s", out, a.log.String())
	}
	reqs := w.Requests(w.APIHost())
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+key {
		t.Fatalf("after the restart the API got %q", redact(got, key))
	}

	// End the command: keygate run, reattached, exits with its status.
	sb.in.Close()
	sb.in = nil
	err := sb.cmd.Wait()
	if code := sb.cmd.ProcessState.ExitCode(); code != 4 {
		t.Fatalf("keygate run exited %d (%v), want the command's 4; stderr %s", code, err, sb.errb.String())
	}
	if !strings.Contains(sb.errb.String(), "lost keygated") {
		t.Errorf("keygate run did not say it lost the agent: %s", sb.errb.String())
	}
	a.stop()
	assertNoResidue(t, a)
}

// TestManySandboxes creates 100 persistent sandboxes with their own
// addresses and placeholders, uses each, removes them all and checks that
// nothing is left behind. It reports creation latency.
func TestManySandboxes(t *testing.T) {
	if testing.Short() {
		t.Skip("100 sandboxes")
	}
	w, a, _ := credentialedAgent(t)

	const count = 100
	ids := make([]string, 0, count)
	var took []time.Duration
	for range count {
		start := time.Now()
		id := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
		took = append(took, time.Since(start))
		ids = append(ids, id)
	}
	slices.Sort(took)
	t.Logf("sandbox create (CLI round trip, %d live at the end): p50 %v, p99 %v, max %v",
		count, took[count/2], took[count*99/100], took[count-1])

	placeholders := map[string]bool{}
	addrs := map[string]bool{}
	var sbs []struct{ ID, Address string }
	json.Unmarshal([]byte(a.mustKG("", "sandbox", "list", "--json")), &sbs)
	for _, s := range sbs {
		addrs[s.Address] = true
	}
	if len(sbs) != count || len(addrs) != count {
		t.Fatalf("%d sandboxes listed with %d distinct addresses, want %d", len(sbs), len(addrs), count)
	}
	before := len(w.Requests(w.APIHost()))
	for i, id := range ids {
		// Every tenth sandbox makes a real request; all report their placeholder.
		script := `printf %s "$API_KEY"`
		if i%10 == 0 {
			script += `; curl -sS -m 10 -o /dev/null https://` + w.APIHost() + `/many -H "Authorization: Bearer $API_KEY"`
		}
		out, errOut, code := a.kg("", "sandbox", "exec", id, "--", "sh", "-c", script)
		if code != 0 {
			t.Fatalf("exec in %s: exit %d: %s", id, code, errOut)
		}
		placeholders[out] = true
	}
	if len(placeholders) != count {
		t.Fatalf("%d distinct placeholders across %d sandboxes", len(placeholders), count)
	}
	if n := len(w.Requests(w.APIHost())) - before; n != count/10 {
		t.Fatalf("API received %d requests, want %d", n, count/10)
	}

	start := time.Now()
	a.mustKG("", append([]string{"sandbox", "rm"}, ids...)...)
	t.Logf("removed %d sandboxes in %v", count, time.Since(start))
	assertNoSandboxes(t, a)
}

// assertNoSandboxes checks that a running agent holds no sandbox state:
// no host links, cgroups, namespace pins or records.
func assertNoSandboxes(t *testing.T, a *agent) {
	t.Helper()
	links, _ := nlretry.Do(netlink.LinkList)
	for _, l := range links {
		if ours(l) {
			t.Errorf("sandbox link %s left behind", l.Attrs().Name)
		}
	}
	for what, dir := range map[string]string{
		"cgroup":    a.cgroup,
		"netns pin": filepath.Join(a.dir, "netns"),
		"record":    filepath.Join(a.dir, "state", "sandboxes"),
	} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if what != "cgroup" || e.IsDir() {
				t.Errorf("%s %s left behind in %s", what, e.Name(), dir)
			}
		}
	}
	if out := a.mustKG("", "sandbox", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("sandbox list after removal: %s", out)
	}
	var st struct {
		AddressLeases int `json:"address_leases"`
	}
	jsonInto(t, a.mustKG("", "status", "--json"), &st)
	if st.AddressLeases != 0 {
		t.Errorf("%d address leases left", st.AddressLeases)
	}
	// Pinned objects: the cgroup programs' maps and links stay while the
	// agent runs; no guard link of a removed veth, no map entry of a
	// removed sandbox's sockets.
	pins := filepath.Join("/sys/fs/bpf/keygate", filepath.Base(a.cgroup))
	entries, err := os.ReadDir(pins)
	if err != nil {
		t.Fatalf("pin dir: %v", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "guard-kg-") {
			t.Errorf("guard pin %s left behind", e.Name())
		}
	}
	for _, name := range []string{"sock_dst", "conn_dst", "guard_veths"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pins, name), nil)
		if err != nil {
			t.Errorf("open pinned %s: %v", name, err)
			continue
		}
		n := 0
		var k, v []byte
		for it := m.Iterate(); it.Next(&k, &v); {
			n++
		}
		m.Close()
		if n != 0 {
			t.Errorf("%d entries left in %s", n, name)
		}
	}
}

// TestAgentsShareAHost starts a second agent while the first has a live
// sandbox: the newcomer's clean-up of strays must leave the other agent's
// sandboxes alone.
func TestAgentsShareAHost(t *testing.T) {
	w, a, _ := credentialedAgent(t)
	id := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
	curl := []string{"sandbox", "exec", id, "--", "sh", "-c",
		`curl -sS -m 10 -o /dev/null -w '%{http_code}' https://` + w.APIHost() + `/shared -H "Authorization: Bearer $API_KEY"`}
	if out := a.mustKG("", curl...); out != "200" {
		t.Fatalf("before the second agent: %q", out)
	}
	startAgent(t, w, "--sandbox-cidr", "10.237.0.0/16", "--sandbox-cidr6", "fd6b:6761:7437::/48")
	if out := a.mustKG("", curl...); out != "200" {
		t.Fatalf("after a second agent started: %q", out)
	}
}
