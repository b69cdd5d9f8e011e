//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunContract checks keygate run's process contract: stdio and exit
// status pass through, and interrupting keygate run ends the sandbox.
func TestRunContract(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)

	t.Run("exit status passes through", func(t *testing.T) {
		_, errOut, code := a.run(nil, "exit 7")
		if code != 7 {
			t.Fatalf("exit %d, want 7 (stderr %s)", code, errOut)
		}
	})

	t.Run("stdin and stderr pass through", func(t *testing.T) {
		out, errOut, code := a.kg("hello from stdin\n", "run", "--", "sh", "-c", "cat; echo to-stderr >&2")
		if code != 0 || out != "hello from stdin\n" || !strings.Contains(errOut, "to-stderr") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("sandbox is unprivileged and isolated", func(t *testing.T) {
		script := `id -u; ls /proc | grep -c '^[0-9]'; ` +
			`cat ` + filepath.Join(a.dir, "state", "master.key") + ` 2>/dev/null && echo KEY-READABLE; ` +
			`test -S ` + a.socket + ` && echo SOCKET-VISIBLE; ` +
			`touch /etc/keygate-test 2>/dev/null && echo ETC-WRITABLE; ` +
			`touch /tmp/x && echo tmp-ok`
		out, errOut, code := a.run(nil, script)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Fields(out)
		if len(lines) < 3 || lines[0] != "65534" {
			t.Fatalf("output %q: want uid 65534 first", out)
		}
		// sh, ls and grep at most: the sandbox sees only its own processes.
		if n, err := strconv.Atoi(lines[1]); err != nil || n < 1 || n > 4 {
			t.Errorf("sandbox sees %s processes in /proc, want only its own (sh, ls, grep)", lines[1])
		}
		for _, bad := range []string{"KEY-READABLE", "SOCKET-VISIBLE", "ETC-WRITABLE"} {
			if strings.Contains(out, bad) {
				t.Errorf("sandbox: %s", bad)
			}
		}
		if !strings.Contains(out, "tmp-ok") {
			t.Errorf("sandbox has no writable /tmp: %q", out)
		}
	})

	t.Run("interrupting run ends the sandbox", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(binDir, "keygate"), "run", "--", "sleep", "300")
		cmd.Env = append(os.Environ(), "KEYGATE_SOCKET="+a.socket)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool { return len(a.sandboxes(t)) == 1 }) {
			cmd.Process.Kill()
			t.Fatalf("sandbox never appeared: %s", errb.String())
		}
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		if !waitFor(5*time.Second, func() bool { return len(a.sandboxes(t)) == 0 }) {
			t.Fatal("sandbox still listed 5s after keygate run was interrupted")
		}
		entries, _ := os.ReadDir(a.cgroup)
		for _, e := range entries {
			if e.IsDir() {
				t.Errorf("sandbox cgroup %s left behind", e.Name())
			}
		}
	})

	a.stop()
	assertNoResidue(t, a)
}

// sandboxes lists the agent's live sandboxes.
func (a *agent) sandboxes(t *testing.T) []map[string]any {
	t.Helper()
	out, errOut, code := a.kg("", "sandbox", "list", "--json")
	if code != 0 {
		t.Fatalf("sandbox list: exit %d: %s", code, errOut)
	}
	var sbs []map[string]any
	if err := json.Unmarshal([]byte(out), &sbs); err != nil {
		t.Fatalf("sandbox list: %v: %q", err, out)
	}
	return sbs
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
