//go:build linux

package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// robustScript probes keygated's listener from inside a sandbox with raw
// sockets: bytes that are not TLS, a broken ClientHello, a connection that
// never says anything, headers sent one line a second (slow-loris),
// oversized headers, and a sandbox opening more connections than its cap.
// It prints one line per probe: name, outcome, figures.
const robustScript = `
import os, resource, socket, ssl, sys, threading, time
host = sys.argv[1]
ctx = ssl.create_default_context()

def tcp():
    return socket.create_connection((host, 443), timeout=5)

def tls():
    s = ctx.wrap_socket(tcp(), server_hostname=host)
    return s

def ended(s, secs):
    s.settimeout(secs)
    try:
        while True:
            if not s.recv(4096):
                return "closed"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "open"
    except (ssl.SSLError, OSError):
        return "closed"

def probe_bytes(name, data):
    s = tcp()
    s.sendall(data)
    print(name, ended(s, 3), flush=True)

probe_bytes("garbage", b"\x00\x01 these bytes are not TLS\r\n\r\n" * 4)
probe_bytes("badhello", b"\x16\x03\x01\x01\x00" + os.urandom(256))

# Oversized headers: 100 KB in one header line.
s = tls()
s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\nX-Big: %s\r\n\r\n" % (host, "a" * 100000)).encode())
print("bigheader", s.recv(64).split(b"\r\n")[0].decode(), flush=True)
s.close()

# A connection that never speaks, and one that sends a header line a
# second: both must be cut by the handshake/header timeout.
results = {}
def stall():
    t0 = time.time(); s = tcp()
    results["stall"] = (ended(s, 30), time.time() - t0)
def slow():
    t0 = time.time(); s = tls()
    s.sendall(("GET / HTTP/1.1\r\nHost: %s\r\n" % host).encode())
    state = "open"
    for i in range(30):
        time.sleep(1)
        try:
            s.sendall(b"X-Slow: %d\r\n" % i)
        except OSError:
            state = "closed"; break
        s.settimeout(0.01)
        try:
            if not s.recv(4096):
                state = "closed"; break
            state = "answered"; break
        except socket.timeout:
            pass
        except OSError:
            state = "closed"; break
    results["slowloris"] = (state, time.time() - t0)
ts = [threading.Thread(target=stall), threading.Thread(target=slow)]
[t.start() for t in ts]; [t.join() for t in ts]
for k in ("stall", "slowloris"):
    print(k, results[k][0], "%.1f" % results[k][1], flush=True)

# The connection cap: open connections until one is refused.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
conns, extra = [], "none"
for i in range(int(sys.argv[2]) + 8):
    try:
        conns.append(tls())
    except (ssl.SSLError, OSError) as e:
        extra = type(e).__name__
        break
print("cap", len(conns), extra, flush=True)
for c in conns:
    c.close()
`

// TestProxyRobustness checks the listener's defences against a sandbox
// that misbehaves at the socket level: each probe ends with the
// connection closed (or answered 431), is recorded with its reason, and
// keygated goes on serving.
func TestProxyRobustness(t *testing.T) {
	w, a, _ := credentialedAgent(t)
	const connCap = 1024 // proxy.DefaultMaxConnsPerSandbox

	out, errOut, code := a.run([]string{"--vault", "v"},
		`python3 -c '`+strings.ReplaceAll(robustScript, "'", `'"'"'`)+`' `+w.APIHost()+` `+strconv.Itoa(connCap)+
			` && curl -sS -m 10 -o /dev/null -w '%{http_code}\n' https://`+w.APIHost()+`/after -H "Authorization: Bearer $API_KEY"`)
	if code != 0 {
		t.Fatalf("probes: exit %d\n%s\n%s", code, out, lastLines(errOut, 20))
	}
	t.Logf("probes:\n%s", out)
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			got[f[0]] = f[1:]
		}
	}
	for _, name := range []string{"garbage", "badhello"} {
		if r := got[name]; len(r) == 0 || r[0] == "open" {
			t.Errorf("%s: connection still open: %v", name, r)
		}
	}
	if r := got["bigheader"]; len(r) < 2 || r[1] != "431" {
		t.Errorf("oversized headers answered %v, want 431", r)
	}
	// The timeout is 10 s (proxy.Config.HandshakeTimeout).
	for _, name := range []string{"stall", "slowloris"} {
		r := got[name]
		if len(r) < 2 || r[0] != "closed" && r[0] != "reset" {
			t.Errorf("%s: %v, want the connection cut", name, r)
			continue
		}
		if secs, _ := strconv.ParseFloat(r[1], 64); secs < 8 || secs > 16 {
			t.Errorf("%s: cut after %.1f s, want about 10", name, secs)
		}
	}
	if r := got["cap"]; len(r) < 2 || r[0] != strconv.Itoa(connCap) || r[1] == "none" {
		t.Errorf("connection cap: %v, want %d open and the next refused", r, connCap)
	}
	if !strings.HasSuffix(strings.TrimSpace(out), "200") {
		t.Errorf("keygated did not serve a request after the probes: %q", out)
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := a.auditRecords(t, "--kind", "request.deny")
		notTLS := countKind(recs, "request.deny", func(r auditRecord) bool { return r.Reason == "not_tls" })
		capped := countKind(recs, "request.deny", func(r auditRecord) bool { return r.Reason == "too_many_connections" })
		if notTLS >= 2 && capped >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit: %d not_tls (want 2), %d too_many_connections (want 1)", notTLS, capped)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUpstreamFailures checks that a failure on the upstream side is a
// 502 whose JSON body names the cause: nothing listening at the pinned
// address, and an upstream whose certificate is not for the name asked.
func TestUpstreamFailures(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	key := secret(t)
	down, wrong := "down."+w.Zone, "wrongcert."+w.Zone
	w.SetRecord(down, w.DNS.Addr()) // the world's DNS server: nothing on 443
	w.SetRecord(wrong, w.API)       // the API, whose certificate names api.<zone>
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost(), "--domain", down, "--domain", wrong)

	for _, tt := range []struct{ host, cause string }{
		{down, "connection refused"},
		{wrong, "certificate"},
	} {
		t.Run(tt.host, func(t *testing.T) {
			before := len(w.Requests(w.APIHost()))
			out, errOut, code := a.run([]string{"--vault", "v"},
				`curl -sS -m 20 -w '\n%{http_code}' https://`+tt.host+`/x -H "Authorization: Bearer $API_KEY"`)
			if code != 0 || strings.Contains(out+errOut, key) {
				t.Fatalf("exit %d: %s %s", code, redact(out, key), redact(errOut, key))
			}
			out = strings.TrimSpace(out)
			i := strings.LastIndex(out, "\n")
			body, status := out[:max(i, 0)], out[i+1:]
			if status != "502" || !strings.Contains(body, `"error"`) || !strings.Contains(body, tt.cause) {
				t.Fatalf("answer %s %q, want 502 naming %q", status, body, tt.cause)
			}
			// The upstream that failed verification got no request.
			if n := len(w.Requests(w.APIHost())); n != before {
				t.Fatalf("the API received %d requests over a connection that failed verification", n-before)
			}
		})
	}
}

// TestRequestCap: a sandbox's requests in flight are capped over all its
// connections (HTTP/2 multiplexes 250 on one); the rest get 429 with the
// reason, reach nothing, and the cap frees as requests end.
func TestRequestCap(t *testing.T) {
	w, a, key := credentialedAgent(t, "--max-requests-per-sandbox", "4")
	api := "https://" + w.APIHost()
	var urls []string
	for i := range 10 {
		urls = append(urls, fmt.Sprintf("'%s/_kg/download?bytes=%d&slow=%d'", api, 64<<20, i))
	}
	before := len(w.Requests(w.APIHost()))
	out, errOut, _ := a.run([]string{"--vault", "v"}, `curl -sS --http2 -Z --parallel-max 10 --limit-rate 4k -m 6 `+
		`-o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $API_KEY" `+strings.Join(urls, " ")+` 2>/dev/null; `+
		`curl -sS -m 10 -o /dev/null -w 'after %{http_code}\n' `+api+`/after-cap -H "Authorization: Bearer $API_KEY"`)
	if strings.Contains(out+errOut, key) {
		t.Fatal("the sandbox saw the secret")
	}
	n200, n429 := strings.Count(out, "200\n")-strings.Count(out, "after 200\n"), strings.Count(out, "429\n")
	if n429 < 1 || n200 > 4 || !strings.Contains(out, "after 200\n") {
		t.Fatalf("answers (want at most 4 200s, 429s for the rest, then a 200 once they ended):\n%s", out)
	}
	slow := 0
	for _, r := range w.Requests(w.APIHost())[before:] {
		if strings.Contains(r.Path, "slow=") {
			slow++
		}
	}
	if slow > 4 {
		t.Fatalf("the API got %d of the capped requests", slow)
	}
	deadline := time.Now().Add(3 * time.Second)
	for countKind(a.auditRecords(t, "--kind", "request.deny"), "request.deny",
		func(r auditRecord) bool { return r.Reason == "too_many_requests" }) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no request.deny audit record with reason too_many_requests")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlowReadersBounded: a sandbox that opens many downloads and reads
// none cannot make keygated buffer them. With Go's HTTP/2 defaults towards
// the upstream (4 MiB a stream) 100 such streams took its RSS to 460 MiB
// within two seconds; the windows are bounded now.
func TestSlowReadersBounded(t *testing.T) {
	w, a, key := credentialedAgent(t)
	var urls []string
	for i := range 100 {
		urls = append(urls, fmt.Sprintf("'https://%s/_kg/download?bytes=%d&unread=%d'", w.APIHost(), 64<<20, i))
	}
	out, errOut, _ := a.run([]string{"--vault", "v"}, `curl -sS --http2 -Z --parallel-max 100 --limit-rate 1k -m 8 `+
		`-o /dev/null -H "Authorization: Bearer $API_KEY" `+strings.Join(urls, " ")+` 2>/dev/null; true`)
	if strings.Contains(out+errOut, key) {
		t.Fatal("the sandbox saw the secret")
	}
	hwm := peakRSS(t, a.cmd.Process.Pid)
	if hwm > 200<<20 {
		t.Fatalf("keygated peak RSS %d MiB with 100 unread downloads", hwm>>20)
	}
	t.Logf("keygated peak RSS with 100 unread downloads: %d MiB", hwm>>20)
}

// TestStalledUploadsBounded: uploads into an upstream that stops reading
// park at most the flow-control windows in keygated, over HTTP/2 (one
// connection, many streams) and HTTP/1.1 (many connections), however much
// the sandbox tries to send.
func TestStalledUploadsBounded(t *testing.T) {
	w, a, key := credentialedAgent(t)
	url := fmt.Sprintf("'https://%s/_kg/stall?ms=5000&n=[1-50]'", w.APIHost())
	// 50 streams on one HTTP/2 connection and 50 HTTP/1.1 connections, each
	// offering 64 MiB: 6.4 GiB the sandbox would send.
	out, errOut, _ := a.run([]string{"--vault", "v"}, `head -c 64M /dev/zero > /tmp/z && `+
		`(curl -sS --http2 -Z --parallel-max 50 -m 4 -o /dev/null -T /tmp/z -H "Authorization: Bearer $API_KEY" `+url+` &
		  curl -sS --http1.1 -Z --parallel-max 50 -m 4 -o /dev/null -T /tmp/z -H "Authorization: Bearer $API_KEY" `+url+`;
		  wait) 2>/dev/null; true`)
	if strings.Contains(out+errOut, key) {
		t.Fatal("the sandbox saw the secret")
	}
	got := 0
	for _, r := range w.Requests(w.APIHost()) {
		if strings.HasPrefix(r.Path, "/_kg/stall") {
			got++
		}
	}
	if got < 90 {
		t.Fatalf("the stalled upstream saw %d of the 100 uploads; the test did not load keygated", got)
	}
	hwm := peakRSS(t, a.cmd.Process.Pid)
	if hwm > 200<<20 {
		t.Fatalf("keygated peak RSS %d MiB with 100 uploads into a stalled upstream", hwm>>20)
	}
	t.Logf("keygated peak RSS with 100 uploads into a stalled upstream: %d MiB", hwm>>20)

	// The sandbox has ended. Its FINs were queued behind the data keygated
	// had stopped taking and went with its namespace, so only keygated can
	// end these connections; they must not wait for TCP keepalive.
	fromSandboxes := func() int {
		out, err := exec.Command("ss", "-Htn", "state", "established").Output()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 4 && (strings.HasPrefix(f[3], "10.235.") || strings.HasPrefix(f[3], "[fd6b:6761:7435:")) {
				n++
			}
		}
		return n
	}
	if !waitFor(2*time.Second, func() bool { return fromSandboxes() == 0 }) {
		t.Fatalf("%d connections from the ended sandbox still open in keygated", fromSandboxes())
	}
}

// TestUpstreamConnsEndWithSandbox: upstream connections are a sandbox's
// own, and go when it ends, not after the idle timeout.
func TestUpstreamConnsEndWithSandbox(t *testing.T) {
	w, a, key := credentialedAgent(t)
	// The API's connections from this (the host's) namespace: keygated's.
	open := func() int {
		n := 0
		for _, dst := range []string{w.API.String() + ":443", "[" + w.API6.String() + "]:443"} {
			out, err := exec.Command("ss", "-Htn", "state", "established", "dst", dst).Output()
			if err != nil {
				t.Fatal(err)
			}
			n += strings.Count(string(out), "\n")
		}
		return n
	}
	before := open()
	if _, errOut, code := a.run([]string{"--vault", "v"}, `curl -sS -m 10 -o /dev/null https://`+w.APIHost()+
		`/conn -H "Authorization: Bearer $API_KEY"`); code != 0 {
		t.Fatalf("exit %d: %s", code, redact(errOut, key))
	}
	if !waitFor(5*time.Second, func() bool { return open() <= before }) {
		t.Fatalf("%d upstream connections still open after the sandbox ended (%d before)", open(), before)
	}
}
