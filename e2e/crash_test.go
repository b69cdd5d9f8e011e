//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/pkg/vault"
)

// TestCrashDuringWrites kills keygated with SIGKILL in the middle of a
// burst of rotations and checks that the store opens afterwards, holds for
// every credential either the last acknowledged secret or the one being
// written when the agent died (never a torn or missing one), that the audit
// chain verifies, and that the agent starts again on the same state.
func TestCrashDuringWrites(t *testing.T) {
	w := world(t)
	a := startAgent(t, w)
	const creds = 6
	a.mustKG("", "vault", "create", "v")
	for i := range creds {
		a.mustKG(fmt.Sprintf("c%d-v0\n", i), "cred", "add", "v", fmt.Sprintf("c%d", i),
			"--env", fmt.Sprintf("KEY_%d", i), "--domain", w.APIHost())
	}

	// acked[i] is the last version whose rotate returned success;
	// trying[i] is the version being written, which may or may not have
	// been committed when the agent died.
	var (
		mu     sync.Mutex
		acked  = make([]int, creds)
		trying = make([]int, creds)
		wg     sync.WaitGroup
		stop   = make(chan struct{})
	)
	for i := range creds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := 1; ; v++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				trying[i] = v
				mu.Unlock()
				_, _, code := a.kg(fmt.Sprintf("c%d-v%d\n", i, v), "cred", "rotate", "v", fmt.Sprintf("c%d", i))
				if code != 0 {
					return // the agent is gone
				}
				mu.Lock()
				acked[i] = v
				mu.Unlock()
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	a.kill()
	close(stop)
	wg.Wait()

	// The store, opened directly with the master key, holds whole values.
	state := filepath.Join(a.dir, "state")
	key, err := os.ReadFile(filepath.Join(state, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := vault.OpenBolt(filepath.Join(state, "keygate.db"), key)
	if err != nil {
		t.Fatalf("store does not open after SIGKILL: %v", err)
	}
	total := 0
	for i := range creds {
		sec, meta, err := st.Secret("v", fmt.Sprintf("c%d", i))
		if err != nil {
			t.Fatalf("credential c%d after crash: %v", i, err)
		}
		got := string(sec.Bytes())
		old, next := fmt.Sprintf("c%d-v%d", i, acked[i]), fmt.Sprintf("c%d-v%d", i, trying[i])
		if got != old && got != next {
			t.Errorf("c%d = %q after crash, want %q (acknowledged) or %q (in flight)", i, got, old, next)
		}
		if want := uint64(acked[i]) + 1; meta.Version != want && meta.Version != want+1 {
			t.Errorf("c%d version %d, want %d or %d", i, meta.Version, want, want+1)
		}
		total += acked[i]
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rotations acknowledged before SIGKILL", total)
	if total == 0 {
		t.Fatal("no rotation completed before the kill; the test proves nothing")
	}

	// The agent starts again on the same state, and the audit chain holds.
	a.start()
	if out, errOut, code := a.kg("", "audit", "verify"); code != 0 {
		t.Fatalf("audit verify after crash: exit %d: %s%s", code, out, errOut)
	}
	if _, errOut, code := a.kg("c0-new\n", "cred", "rotate", "v", "c0"); code != 0 {
		t.Fatalf("rotate after restart: %s", errOut)
	}
}
