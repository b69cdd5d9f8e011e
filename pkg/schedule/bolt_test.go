package schedule

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func openTestBolt(t *testing.T) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

// openBoltStore is the storeOpener of the embedded engine.
func openBoltStore(t *testing.T) (Store, func() Store) {
	st, path := openTestBolt(t)
	return st, func() Store {
		st.Close()
		var err error
		if st, err = OpenBolt(path); err != nil {
			t.Fatal(err)
		}
		return st
	}
}

func TestBoltStore(t *testing.T) {
	runStoreTests(t, openBoltStore)
}

func TestBoltClaimHorizon(t *testing.T) {
	st, _ := openTestBolt(t)
	ctx := context.Background()
	mustCreate(t, st, "a")
	due := time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)
	claim := func(due time.Time, host string) bool {
		t.Helper()
		ok, err := st.Claim(ctx, "a", due, host)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(due, "h1") || claim(due, "h2") {
		t.Fatal("a due time is not held by its first claimant alone")
	}
	// Claims far older than the newest are dropped.
	if !claim(due.Add(2*claimHorizon), "h2") || !claim(due, "h2") {
		t.Error("old claim was kept past the horizon")
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	_, path := openTestBolt(t)
	start := time.Now()
	if _, err := OpenBolt(path); err == nil {
		t.Fatal("second open of a locked file succeeded")
	}
	if time.Since(start) > 5*boltOpenTimeout {
		t.Error("second open waited too long")
	}
}
