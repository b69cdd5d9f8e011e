// Package gctune gives the garbage collector a floor of headroom.
//
// With GOGC=100 the heap may grow to twice what is live before the next
// collection. keygated's live heap is small when it serves a few busy
// connections (a few MiB), so at that default it collects many times a
// second and spends a large share of its CPU marking the same few objects
// again. A floor lets the heap grow by at least a fixed amount instead:
// few collections under load for a bounded, stated cost in memory, and
// no change once the live heap is larger than the floor (thousands of
// connections), where GOGC=100 already leaves that much room.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// maxPercent bounds the GOGC the tuner sets, so that a nearly empty heap
// does not get an unbounded multiple of itself.
const maxPercent = 2000

// Tuner re-sets GOGC after every collection so that the next one comes
// when the heap has grown by at least the floor.
type Tuner struct {
	floor   uint64
	base    int // GOGC when the live heap is above the floor
	stopped atomic.Bool
	percent atomic.Int64 // the GOGC last set (Percent)
	sample  []metrics.Sample
}

// Start tunes the collector with floor bytes of headroom and returns the
// tuner; Stop ends it and restores the base GOGC. It does nothing (and
// returns nil) when floor is 0 or the GOGC environment variable is set:
// an operator's explicit choice wins.
func Start(floor uint64) *Tuner {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return nil
	}
	t := &Tuner{floor: floor, base: 100,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.percent.Store(int64(t.base))
	t.arm()
	return t
}

// Percent returns the GOGC the tuner last set.
func (t *Tuner) Percent() int { return int(t.percent.Load()) }

// Stop ends the tuning and restores the base GOGC.
func (t *Tuner) Stop() {
	if t == nil || t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.base)
}

// sentinel is garbage from the moment it is made: its finalizer runs
// after the collection that finds it, which is how the tuner hears of
// every cycle. It is larger than the tiny allocator's 16 bytes, which
// would batch it with other objects and delay the finalizer.
type sentinel struct{ _ [32]byte }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

// adjust sets GOGC for the heap live after the collection just ended.
func (t *Tuner) adjust() {
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	p := Percent(t.sample[0].Value.Uint64(), t.floor, t.base)
	if old := t.percent.Load(); p != old {
		debug.SetGCPercent(int(p))
		t.percent.Store(p)
	}
}

// Percent returns the GOGC that gives a heap of live bytes at least floor
// bytes of growth before the next collection, never less than base nor
// more than maxPercent. It is rounded down to a multiple of 10, so that a
// live heap moving a little does not reset the collector every cycle.
func Percent(live, floor uint64, base int) int64 {
	if live == 0 {
		return maxPercent
	}
	p := int64(floor * 100 / live)
	p -= p % 10
	return min(max(p, int64(base)), maxPercent)
}
