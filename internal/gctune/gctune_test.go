package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		live, floor uint64
		want        int64
	}{
		{8 * mib, 64 * mib, 800},   // a small heap gets the floor
		{20 * mib, 64 * mib, 320},  // rounded down to a multiple of 10
		{64 * mib, 64 * mib, 100},  // at the floor: the base
		{300 * mib, 64 * mib, 100}, // above it: never below the base
		{1 * mib, 64 * mib, 2000},  // capped
		{0, 64 * mib, 2000},
	} {
		if got := Percent(tt.live, tt.floor, 100); got != tt.want {
			t.Errorf("Percent(%d MiB, %d MiB) = %d, want %d", tt.live/mib, tt.floor/mib, got, tt.want)
		}
	}
}

// The tuner hears of collections and sets GOGC from the live heap; Stop
// puts the base back.
func TestTunerFollowsCollections(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := Start(256 << 20)
	if tu == nil {
		t.Fatal("Start returned nil with a floor and no GOGC")
	}
	defer tu.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for tu.Percent() == 100 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	// A test binary's live heap is a few MiB: far below 256 MiB.
	if p := tu.Percent(); p <= 100 {
		t.Fatalf("GOGC after collections = %d, want above 100", p)
	}
	if cur := debug.SetGCPercent(100); int64(cur) != int64(tu.Percent()) {
		t.Fatalf("runtime GOGC %d, tuner says %d", cur, tu.Percent())
	}
	debug.SetGCPercent(tu.Percent())
	tu.Stop()
	if cur := debug.SetGCPercent(100); cur != 100 {
		t.Fatalf("GOGC after Stop = %d, want the base 100", cur)
	}
}

// An operator's GOGC wins: the tuner does not start.
func TestExplicitGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	if tu := Start(64 << 20); tu != nil {
		tu.Stop()
		t.Fatal("Start tuned the collector although GOGC was set")
	}
	if tu := Start(0); tu != nil {
		t.Fatal("Start with a zero floor tuned the collector")
	}
}
