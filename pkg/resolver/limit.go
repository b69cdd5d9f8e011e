package resolver

import (
	"sync"
	"time"
)

// recordKind is a kind of warning or error record, rate-limited apart from
// the others so that a flood of one kind cannot hide another.
type recordKind uint8

const (
	kindDenial  recordKind = iota // a denied query
	kindDropped                   // internal addresses dropped from an answer
	kindFailure                   // an upstream failure
)

// limitKey names one token bucket.
type limitKey struct {
	kind    recordKind
	sandbox string
}

const (
	// minPrune is the number of buckets below which a limiter does not
	// prune, so that pruning stays rare.
	minPrune = 1024

	// pruneIdle is how long a bucket must be unused before pruning drops
	// it while it still holds a count of suppressed records; that count is
	// then never reported.
	pruneIdle = time.Minute
)

// limiter is a set of token buckets, one per sandbox and record kind, each
// refilled at rate tokens per second and holding at most rate tokens: it
// lets a burst of rate records through, then rate per second. A bucket
// remembers how many records it refused, so that the next record let
// through can report them.
type limiter struct {
	rate float64

	mu      sync.Mutex
	buckets map[limitKey]*bucket // guarded by mu
	pruneAt int                  // bucket count that triggers pruning; guarded by mu
}

type bucket struct {
	tokens     float64
	last       time.Time // when tokens was last updated
	suppressed int       // records refused since the last one allowed
}

func newLimiter(rate int) *limiter {
	return &limiter{rate: float64(rate), buckets: make(map[limitKey]*bucket), pruneAt: minPrune}
}

// allow takes a token from k's bucket at time now. It reports whether the
// record may be emitted and, if so, how many records of k it refused since
// the last one it allowed.
func (l *limiter) allow(k limitKey, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()

	b := l.buckets[k]
	if b == nil {
		if len(l.buckets) >= l.pruneAt {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[k] = b
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(l.rate, b.tokens+elapsed.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// pruneLocked drops the buckets a new one would behave the same as (full,
// with nothing suppressed) and those idle for pruneIdle, so that buckets of
// removed sandboxes do not accumulate.
func (l *limiter) pruneLocked(now time.Time) {
	for k, b := range l.buckets {
		idle := now.Sub(b.last)
		full := b.tokens+idle.Seconds()*l.rate >= l.rate
		if full && b.suppressed == 0 || idle >= pruneIdle {
			delete(l.buckets, k)
		}
	}
	l.pruneAt = max(minPrune, 2*len(l.buckets))
}
