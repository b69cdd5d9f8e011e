//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestInjectionRules checks each place a credential can go, through curl
// in a real sandbox: a prefixed placeholder in a bearer token, a header
// template the client never sent, Basic credentials, and the query string
// only for a credential that opted in.
func TestInjectionRules(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	keyBearer, keyTmpl, keyBasic, keyQuery := secret(t), secret(t), secret(t), secret(t)+"/+&="

	a.mustKG("", "vault", "create", "v")
	a.mustKG(keyBearer+"\n", "cred", "add", "v", "bearer", "--env", "BEARER_KEY",
		"--domain", w.APIHost(), "--placeholder-prefix", "sk-")
	a.mustKG(keyTmpl+"\n", "cred", "add", "v", "tmpl", "--env", "TMPL_KEY",
		"--domain", w.APIHost(), "--header", "X-Api-Key: token {}")
	a.mustKG(keyBasic+"\n", "cred", "add", "v", "basic", "--env", "BASIC_PASS", "--domain", w.APIHost())
	a.mustKG(keyQuery+"\n", "cred", "add", "v", "query", "--env", "QUERY_KEY",
		"--domain", w.APIHost(), "--query")

	api := "https://" + w.APIHost()
	var outputs []string
	curl := func(t *testing.T, args string) string {
		t.Helper()
		out, errOut, code := a.run([]string{"--vault", "v"}, `curl -sS -m 10 -w '\n%{http_code}' `+args)
		outputs = append(outputs, out, errOut)
		if code != 0 {
			t.Fatalf("curl %s: exit %d: %s", args, code, errOut)
		}
		return out
	}
	last := func(t *testing.T) (path string, h func(string) string) {
		t.Helper()
		reqs := w.Requests(w.APIHost())
		if len(reqs) == 0 {
			t.Fatal("API received nothing")
		}
		r := reqs[len(reqs)-1]
		return r.Path, r.Header.Get
	}

	t.Run("prefixed placeholder", func(t *testing.T) {
		out, _, code := a.run([]string{"--vault", "v"}, `printf %s "$BEARER_KEY"`)
		if code != 0 || !strings.HasPrefix(out, "sk-kgph_") {
			t.Fatalf("BEARER_KEY = %q, want sk-kgph_...", out)
		}
		if out := curl(t, api+`/bearer -H "Authorization: Bearer $BEARER_KEY"`); !strings.HasSuffix(out, "200") {
			t.Fatalf("status: %q", out)
		}
		if _, h := last(t); h("Authorization") != "Bearer "+keyBearer {
			t.Fatalf("Authorization = %q", redact(h("Authorization"), keyBearer))
		}
	})

	t.Run("header template without client header", func(t *testing.T) {
		curl(t, api+`/tmpl`)
		if _, h := last(t); h("X-Api-Key") != "token "+keyTmpl {
			t.Fatalf("X-Api-Key = %q", redact(h("X-Api-Key"), keyTmpl))
		}
	})

	t.Run("basic credentials", func(t *testing.T) {
		curl(t, `-u "x-access-token:$BASIC_PASS" `+api+`/basic`)
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+keyBasic))
		if _, h := last(t); h("Authorization") != want {
			t.Fatalf("Authorization = %q, want Basic of the real password", h("Authorization"))
		}
	})

	t.Run("query opted in", func(t *testing.T) {
		curl(t, `"`+api+`/q?key=$QUERY_KEY&z=1"`)
		path, _ := last(t)
		if path != "/q?key="+url.QueryEscape(keyQuery)+"&z=1" {
			t.Fatalf("path = %q", redact(path, url.QueryEscape(keyQuery)))
		}
	})

	t.Run("query refused for a header credential", func(t *testing.T) {
		before := len(w.Requests(w.APIHost()))
		out := curl(t, `"`+api+`/q?key=$BEARER_KEY"`)
		if !strings.HasSuffix(out, "403") || !strings.Contains(out, "placeholder_in_url") {
			t.Fatalf("got %q, want 403 placeholder_in_url", out)
		}
		if n := len(w.Requests(w.APIHost())) - before; n != 0 {
			t.Fatalf("%d requests forwarded", n)
		}
	})

	a.stop()
	outputs = append(outputs, a.log.String())
	for _, k := range []string{keyBearer, keyTmpl, keyBasic, keyQuery} {
		for i, o := range outputs {
			if strings.Contains(o, k) {
				t.Errorf("output %d contains a secret: %s", i, redact(o, k))
			}
		}
	}
}

// TestCredentialRules checks the operator-facing rules of cred add: the
// 20-credential limit, env var validation and uniqueness, one-line errors.
func TestCredentialRules(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	a.mustKG("", "vault", "create", "v")
	for i := range 20 {
		a.mustKG("s\n", "cred", "add", "v", fmt.Sprintf("c%02d", i), "--env", fmt.Sprintf("KEY_%02d", i), "--domain", w.APIHost())
	}

	tests := []struct {
		name  string
		args  []string
		input string
		want  string
	}{
		{"21st credential", []string{"cred", "add", "v", "c20", "--env", "KEY_20", "--domain", "a.test"}, "s\n",
			"credential limit reached: a vault holds at most 20"},
		{"bad env name", []string{"cred", "add", "w", "x", "--env", "BAD-NAME", "--domain", "a.test"}, "s\n",
			"must match [A-Za-z_][A-Za-z0-9_]*"},
		{"reserved env", []string{"cred", "add", "w", "x", "--env", "LD_PRELOAD", "--domain", "a.test"}, "s\n",
			"reserved"},
		{"duplicate env", []string{"cred", "add", "w", "y", "--env", "W_KEY", "--domain", "a.test"}, "s\n",
			"already used by credential"},
		{"empty secret", []string{"cred", "add", "w", "z", "--env", "Z_KEY", "--domain", "a.test"}, "\n",
			"empty secret"},
		{"bad domain", []string{"cred", "add", "w", "z", "--env", "Z_KEY", "--domain", "*"}, "s\n",
			"domain"},
		{"secret in argv is not a flag", []string{"cred", "add", "w", "z", "--env", "Z_KEY", "--domain", "a.test", "--secret", "x"}, "",
			"flag provided but not defined: -secret"},
	}
	a.mustKG("", "vault", "create", "w")
	a.mustKG("s\n", "cred", "add", "w", "x", "--env", "W_KEY", "--domain", "a.test")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := a.kg(tt.input, tt.args...)
			if code == 0 {
				t.Fatalf("exit 0, want failure (stdout %q)", out)
			}
			if !strings.Contains(errOut, tt.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("stderr %q, want one line containing %q", errOut, tt.want)
			}
		})
	}
}

// TestRotationUnderLoad rotates a credential while 200 requests are in
// flight from a running sandbox: none fails, and every request sent after
// `keygate cred rotate` returned carries the new secret.
func TestRotationUnderLoad(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	oldKey, newKey := secret(t), secret(t)
	a.mustKG("", "vault", "create", "v")
	a.mustKG(oldKey+"\n", "cred", "add", "v", "api", "--env", "API_KEY", "--domain", w.APIHost())

	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, code := a.kg("", "run", "--vault", "v", "--", filepath.Join(binDir, "loadclient"),
			"-url", "https://"+w.APIHost()+"/load", "-c", "200", "-d", "4s", "-bearer-env", "API_KEY")
		done <- result{out, errOut, code}
	}()

	// Rotate once the load is running and both secrets will be seen.
	if !waitFor(20*time.Second, func() bool { return len(w.Requests(w.APIHost())) > 3000 }) {
		t.Fatal("the load did not reach the API")
	}
	a.mustKG(newKey+"\n", "cred", "rotate", "v", "api")
	rotated := time.Now().UnixNano()

	res := <-done
	if res.code != 0 {
		t.Fatalf("loadclient: exit %d: %s", res.code, res.errOut)
	}
	var sum struct {
		OK, Failed int64
		Errors     []string
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(res.out)), &sum); err != nil {
		t.Fatalf("loadclient output %q: %v", res.out, err)
	}
	if sum.Failed != 0 || sum.OK == 0 {
		t.Fatalf("loadclient: %d ok, %d failed (%v)", sum.OK, sum.Failed, sum.Errors)
	}

	var before, after, stale int
	for _, r := range w.Requests(w.APIHost()) {
		start, err := strconv.ParseInt(r.Header.Get("X-Start"), 10, 64)
		if err != nil {
			continue
		}
		auth := r.Header.Get("Authorization")
		switch {
		case start <= rotated:
			before++
		case auth == "Bearer "+newKey:
			after++
		default:
			stale++
		}
	}
	t.Logf("%d requests (%d ok by the client), %d sent before the rotation returned, %d after", before+after+stale, sum.OK, before, after)
	if stale != 0 {
		t.Fatalf("%d requests sent after rotate returned did not carry the new secret", stale)
	}
	if after == 0 {
		t.Fatal("no request was sent after the rotation; the test proves nothing")
	}
	a.stop()
	for _, k := range []string{oldKey, newKey} {
		if strings.Contains(a.log.String()+res.out+res.errOut, k) {
			t.Error("a secret appeared in the agent log or the sandbox output")
		}
	}
}

// TestArchive archives a vault while a sandbox bound to it runs: the
// sandbox's next credential use is refused with a body that says why and
// nothing is forwarded; new runs refuse to start; and neither the secret
// nor its sealed record can be found anywhere in the state directory.
func TestArchive(t *testing.T) {
	w, a, key := credentialedAgent(t)
	a.mustKG("", "vault", "create", "keep")
	a.mustKG(secret(t)+"\n", "cred", "add", "keep", "other", "--env", "OTHER_KEY", "--domain", w.OtherHost())

	// A sandbox that makes one request per line it reads.
	sb := a.startInteractive(t, []string{"--vault", "v", "--allow", w.OtherHost()},
		`while read host auth; do `+
			`if [ "$auth" = key ]; then h="Authorization: Bearer $API_KEY"; else h="X-None: none"; fi; `+
			`curl -sS -m 10 -w '\n%{http_code}\n' https://$host/x -H "$h"; echo END; done`)

	if out := sb.do(t, w.APIHost()+" key"); !strings.HasSuffix(out, "\n200") {
		t.Fatalf("before archive: %q", out)
	}

	stateDir := filepath.Join(a.dir, "state")
	sealed := sealedRecord(t, filepath.Join(stateDir, "keygate.db"), "v", "api")
	a.mustKG("", "vault", "archive", "v")

	t.Run("running sandbox is refused with the reason", func(t *testing.T) {
		before := len(w.Requests(w.APIHost()))
		out := sb.do(t, w.APIHost()+" key")
		if !strings.HasSuffix(out, "\n403") || !strings.Contains(out, "vault_archived") || !strings.Contains(out, "archived") {
			t.Fatalf("after archive: %q, want 403 vault_archived", out)
		}
		if n := len(w.Requests(w.APIHost())) - before; n != 0 {
			t.Fatalf("%d requests forwarded after archive", n)
		}
	})

	t.Run("other traffic of the sandbox keeps working", func(t *testing.T) {
		if out := sb.do(t, w.OtherHost()); !strings.HasSuffix(out, "\n200") {
			t.Fatalf("other host after archive: %q", out)
		}
	})
	sb.close(t)

	t.Run("new sandboxes refuse to start", func(t *testing.T) {
		_, errOut, code := a.run([]string{"--vault", "v"}, "echo started")
		if code != 125 || !strings.Contains(errOut, "archived") {
			t.Fatalf("exit %d, stderr %q; want 125 and 'archived'", code, errOut)
		}
	})

	t.Run("vault is listed as archived", func(t *testing.T) {
		out := a.mustKG("", "vault", "list", "--json")
		var vs []struct {
			Name     string
			Archived bool
		}
		if err := json.Unmarshal([]byte(out), &vs); err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if v.Name == "v" && !v.Archived {
				t.Fatalf("vault v not archived: %s", out)
			}
		}
	})

	t.Run("purge leaves nothing in the state directory", func(t *testing.T) {
		needles := map[string][]byte{
			"secret":         []byte(key),
			"sealed record":  sealed,
			"wrapped key":    sealed[1:61],
			"sealed secret":  sealed[61:],
			"secret, base64": []byte(base64.StdEncoding.EncodeToString([]byte(key))),
		}
		scanTree(t, stateDir, needles)
	})
	a.stop()
	if strings.Contains(a.log.String(), key) {
		t.Error("the agent log contains the secret")
	}
}

// sealedRecord copies a live store file and reads one credential's sealed
// record from the copy (the agent holds the file's lock).
func sealedRecord(t *testing.T, dbPath, vault, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(cp, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rec []byte
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("secrets")); b != nil {
			if vb := b.Bucket([]byte(vault)); vb != nil {
				rec = bytes.Clone(vb.Get([]byte(name)))
			}
		}
		return nil
	})
	if len(rec) < 61+28 {
		t.Fatalf("no sealed record for %s/%s in the store (%d bytes)", vault, name, len(rec))
	}
	return rec
}

// scanTree fails t if any file under dir contains any needle.
func scanTree(t *testing.T, dir string, needles map[string][]byte) {
	t.Helper()
	files := 0
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s found in %s", what, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no files under %s: the scan proves nothing", dir)
	}
}

// interactive is a sandbox driven line by line over its stdin.
type interactive struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	errb  *syncBuffer
	lines []string
}

// startInteractive runs script in a sandbox that stays up until close.
func (a *agent) startInteractive(t *testing.T, runArgs []string, script string) *interactive {
	t.Helper()
	args := append([]string{"run"}, runArgs...)
	args = append(args, "--", "sh", "-c", script)
	cmd := exec.Command(filepath.Join(binDir, "keygate"), args...)
	cmd.Env = append(os.Environ(), "KEYGATE_SOCKET="+a.socket)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	sb := &interactive{cmd: cmd, in: in, out: bufio.NewReader(out), errb: &syncBuffer{}}
	cmd.Stderr = sb.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.close(t) })
	return sb
}

// do sends one line and returns the output up to the END marker.
func (sb *interactive) do(t *testing.T, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(sb.in, line); err != nil {
		t.Fatalf("write to sandbox: %v (stderr %s)", err, sb.errb.String())
	}
	var lines []string
	deadline := time.AfterFunc(30*time.Second, func() { sb.cmd.Process.Kill() })
	defer deadline.Stop()
	for {
		l, err := sb.out.ReadString('\n')
		if err != nil {
			t.Fatalf("read from sandbox: %v (stderr %s)", err, sb.errb.String())
		}
		l = strings.TrimSuffix(l, "\n")
		if l == "END" {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, l)
	}
}

func (sb *interactive) close(t *testing.T) {
	if sb.in == nil {
		return
	}
	sb.in.Close()
	sb.in = nil
	done := make(chan struct{})
	go func() { sb.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		sb.cmd.Process.Kill()
		<-done
		t.Errorf("sandbox did not exit after its stdin closed")
	}
}
