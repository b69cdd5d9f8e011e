package schedule

import "sync"

// tail is an io.Writer that keeps only the last max bytes written to it.
// It is safe for concurrent use, since a runner may copy stdout and stderr
// into it from separate goroutines.
type tail struct {
	max int

	mu  sync.Mutex
	buf []byte // the bytes kept, possibly more than max; guarded by mu
}

func newTail(max int) *tail { return &tail{max: max} }

// Write keeps the end of p. It never fails.
func (t *tail) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Let the buffer grow to twice the limit before sliding the end
	// down, so that each byte is copied a bounded number of times.
	if len(t.buf)+len(p) > 2*t.max {
		keep := max(t.max-len(p), 0)
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

// Bytes returns a copy of the last max bytes written.
func (t *tail) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max {
		b = b[len(b)-t.max:]
	}
	return append([]byte(nil), b...)
}
