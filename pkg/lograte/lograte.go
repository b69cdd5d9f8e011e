// Package lograte limits how often a hot-path error is logged, so that a
// failure hit by every request (a dead upstream, a broken disk) produces a
// steady trickle of records that say how many were left out, rather than
// a flood that buries everything else.
package lograte

import (
	"sync"
	"time"
)

// Limiter lets at most one record per interval through. The zero value is
// not usable; create one with New. It is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	next       time.Time // guarded by mu; when the next record may pass
	suppressed int       // guarded by mu; records held back since the last one passed
}

// New returns a Limiter passing one record per every.
func New(every time.Duration) *Limiter {
	return &Limiter{every: every, now: time.Now}
}

// Allow reports whether a record may be logged now and, if so, how many
// were held back before it; the caller logs that count with the record.
func (l *Limiter) Allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = now.Add(l.every)
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
