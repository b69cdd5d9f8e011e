//go:build linux

package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/etcdtest"
	"github.com/keygate/keygate/internal/testutil"
)

// TestFleet runs two keygated hosts on one three-member etcd cluster:
// vaults made on one are used by the other's sandboxes, a rotation on A
// reaches B's next request within a second, an archive on B stops A at its
// next credential use and next start, losing an etcd member fails nothing,
// and a host cut off from etcd fails closed after its grace period.
func TestFleet(t *testing.T) {
	testutil.RequireEtcd(t)
	w := world(t)
	cluster := etcdtest.Start(t, 3)
	var hosts []string
	for _, m := range cluster.Members {
		hosts = append(hosts, strings.TrimPrefix(m.ClientURL, "http://"))
	}
	keyFile := filepath.Join(t.TempDir(), "fleet.key")
	k := make([]byte, 32)
	rand.Read(k)
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	// A talks to the whole cluster; B only to member 3, so that stopping
	// member 3 cuts B off while the cluster stays up.
	a := startAgent(t, w, "--store", "etcd://"+strings.Join(hosts, ",")+"?grace=3s",
		"--master-key-file", keyFile, "--node", "host-a", "--audit-etcd-records", "40")
	b := startAgent(t, w, "--store", "etcd://"+hosts[2]+"?grace=3s", "--master-key-file", keyFile,
		"--node", "host-b", "--sandbox-cidr", "10.237.0.0/16", "--sandbox-cidr6", "fd6b:6761:7437::/48")

	key1, key2 := secret(t), secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key1+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	if !waitFor(5*time.Second, func() bool { return strings.Contains(b.mustKG("", "cred", "list", "v"), "api") }) {
		t.Fatal("host B never saw the credential made on host A")
	}

	curl := []string{"sh", "-c", `curl -sS -m 10 -o /dev/null -w '%{http_code}' https://` + w.APIHost() + `/fleet -H "Authorization: Bearer $API_KEY"`}
	exec := func(h *agent, id string) string {
		out, _, _ := h.kg("", append([]string{"sandbox", "exec", id, "--"}, curl...)...)
		return out
	}
	lastAuth := func() string {
		reqs := w.Requests(w.APIHost())
		if len(reqs) == 0 {
			return ""
		}
		return reqs[len(reqs)-1].Header.Get("Authorization")
	}
	sbA := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
	sbB := strings.TrimSpace(b.mustKG("", "sandbox", "create", "--vault", "v"))
	if out := exec(b, sbB); out != "200" || lastAuth() != "Bearer "+key1 {
		t.Fatalf("B's sandbox: %q, API got the real key: %v", out, lastAuth() == "Bearer "+key1)
	}

	t.Run("rotation on A reaches B within a second", func(t *testing.T) {
		a.mustKG(key2+"\n", "cred", "rotate", "v", "api")
		rotated := time.Now()
		time.Sleep(time.Second)
		if out := exec(b, sbB); out != "200" || lastAuth() != "Bearer "+key2 {
			t.Fatalf("B's next request a second after the rotation: %q, new key: %v", out, lastAuth() == "Bearer "+key2)
		}
		t.Logf("B's request %v after the rotation carried the new key", time.Since(rotated).Round(time.Millisecond))
	})

	t.Run("old audit records move out of etcd", func(t *testing.T) {
		out, _, _ := a.kg("", "sandbox", "exec", sbA, "--", "sh", "-c",
			`for i in $(seq 60); do curl -sS -m 10 -o /dev/null -w '%{http_code} ' https://`+w.APIHost()+`/fleet -H "Authorization: Bearer $API_KEY"; done`)
		if got := strings.Count(out, "200 "); got != 60 {
			t.Fatalf("60 requests from A's sandbox: %q", out)
		}
		inEtcd := func() int64 {
			resp, err := cluster.Client().Get(t.Context(), "/keygate/audit/host-a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			return resp.Count
		}
		if !waitFor(10*time.Second, func() bool { return inEtcd() <= 40 }) {
			t.Fatalf("etcd holds %d of host A's records, want at most 40 (--audit-etcd-records)", inEtcd())
		}
		moved, _ := filepath.Glob(filepath.Join(a.dir, "state", "audit-etcd", "host-a", "audit.log.*"))
		if len(moved) == 0 {
			t.Fatal("no segment of moved records in A's state dir")
		}
		// A still shows every one of its records, seq 1 onwards, and they verify.
		var recs []struct {
			Seq  uint64
			Node string
		}
		jsonInto(t, a.mustKG("", "audit", "--json"), &recs)
		var own []uint64
		for _, r := range recs {
			if r.Node == "host-a" {
				own = append(own, r.Seq)
			}
		}
		// Ordered by time, which two records queued at once may hold in
		// the other order than their seqs.
		slices.Sort(own)
		if len(own) < 62 || own[0] != 1 {
			t.Fatalf("A's audit shows %d of its records from seq %v, want 62 or more from 1", len(own), own[:min(1, len(own))])
		}
		for i, seq := range own {
			if seq != uint64(i+1) {
				t.Fatalf("A's records: seq %d at place %d", seq, i+1)
			}
		}
		if out, errOut, code := a.kg("", "audit", "verify"); code != 0 {
			t.Fatalf("audit verify on A after the move: %s %s", out, errOut)
		}
		t.Logf("etcd holds %d of A's %d records; %d segment(s) moved out", inEtcd(), len(own), len(moved))
	})

	t.Run("losing one etcd member fails no request", func(t *testing.T) {
		cluster.Members[0].Kill()
		for i := range 5 {
			for _, h := range []struct {
				a  *agent
				id string
			}{{a, sbA}, {b, sbB}} {
				if out := exec(h.a, h.id); out != "200" {
					t.Fatalf("request %d with a member down: %q", i, out)
				}
			}
		}
		cluster.Restart(cluster.Members[0])
	})

	t.Run("archive on B stops A", func(t *testing.T) {
		b.mustKG("", "vault", "archive", "v")
		time.Sleep(500 * time.Millisecond)
		out, _, _ := a.kg("", "sandbox", "exec", sbA, "--", "sh", "-c",
			`curl -sS -m 10 -w '\n%{http_code}' https://`+w.APIHost()+`/fleet -H "Authorization: Bearer $API_KEY"`)
		if !strings.HasSuffix(out, "\n403") || !strings.Contains(out, "vault_archived") {
			t.Fatalf("A's sandbox after the archive on B: %q", out)
		}
		if _, errOut, code := a.run([]string{"--vault", "v"}, "true"); code != 125 || !strings.Contains(errOut, "archived") {
			t.Fatalf("A started a sandbox on the archived vault: exit %d, %q", code, errOut)
		}
	})

	t.Run("each due run happens once in the fleet", func(t *testing.T) {
		a.mustKG("", "schedule", "create", "tick", "--cron", "@every 2s", "--", "true")
		if !waitFor(5*time.Second, func() bool { return strings.Contains(b.mustKG("", "schedule", "list"), "tick") }) {
			t.Fatal("host B never saw the schedule made on host A")
		}
		b.waitRuns(t, "tick", 4, 20*time.Second)
		a.mustKG("", "schedule", "pause", "tick")
		time.Sleep(time.Second)
		var runs []struct {
			Due  time.Time
			Host string
		}
		jsonInto(t, b.mustKG("", "schedule", "runs", "tick", "--json"), &runs)
		seen := map[time.Time]string{}
		hosts := map[string]int{}
		for _, r := range runs {
			if prev, dup := seen[r.Due]; dup {
				t.Fatalf("due time %v ran on %s and on %s", r.Due, prev, r.Host)
			}
			seen[r.Due] = r.Host
			hosts[r.Host]++
		}
		t.Logf("%d due times, each run once; by host: %v", len(runs), hosts)
	})

	t.Run("a host cut off from etcd fails closed after its grace", func(t *testing.T) {
		a.mustKG("", "vault", "create", "v2")
		a.mustKG(key1+"\n", "cred", "add", "v2", "api", "--env", "API_KEY", "--domain", w.APIHost())
		if !waitFor(5*time.Second, func() bool { return strings.Contains(b.mustKG("", "cred", "list", "v2"), "api") }) {
			t.Fatal("B never saw v2")
		}
		sbB2 := strings.TrimSpace(b.mustKG("", "sandbox", "create", "--vault", "v2"))
		sbA2 := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v2"))
		if out := exec(b, sbB2); out != "200" {
			t.Fatalf("B before the cut: %q", out)
		}
		cluster.Members[2].Stop()
		// Within the grace B still serves what it has; after it, it
		// refuses rather than use a credential it cannot confirm.
		deadline := time.Now().Add(3*time.Second + 5*time.Second)
		for {
			out, _, _ := b.kg("", "sandbox", "exec", sbB2, "--", "sh", "-c",
				`curl -sS -m 10 -w '\n%{http_code}' https://`+w.APIHost()+`/fleet -H "Authorization: Bearer $API_KEY"`)
			if strings.HasSuffix(out, "\n403") && strings.Contains(out, "store_unavailable") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B still served %v after losing etcd: %q", 8*time.Second, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if out := exec(a, sbA2); out != "200" {
			t.Fatalf("A, still connected, failed: %q", out)
		}
		cluster.Restart(cluster.Members[2])
		if !waitFor(15*time.Second, func() bool { return exec(b, sbB2) == "200" }) {
			t.Fatal("B did not recover after etcd came back")
		}
	})

	for _, h := range []*agent{a, b} {
		if out, errOut, code := h.kg("", "audit", "verify"); code != 0 {
			t.Errorf("audit verify: %s %s", out, errOut)
		}
	}
	a.stop()
	b.stop()
	moved, _ := filepath.Glob(filepath.Join(a.dir, "state", "audit-etcd", "host-a", "*"))
	for _, k := range []string{key1, key2} {
		if strings.Contains(a.log.String()+b.log.String(), k) {
			t.Fatal("a secret appeared in an agent's log")
		}
		for _, f := range moved {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), k) {
				t.Fatalf("a secret appeared in %s", f)
			}
		}
	}
}
