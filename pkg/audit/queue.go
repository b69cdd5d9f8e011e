package audit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// request is one record on its way to the writer.
type request struct {
	rec  Record
	done chan error // receives the outcome once the record is durable; nil for Append
	err  error      // set by the writer if it refused this record
}

// appender is the front of a log, shared by File and Etcd: it validates
// records and hands them to the log's writer goroutine through a bounded
// queue, and shuts that queue on Close.
type appender struct {
	// broken holds the error that stopped the writer; once set, every
	// append fails with it.
	broken atomic.Pointer[error]

	queue chan request // to the writer; closed by shut

	// mu is held shared by appenders and readers while they use queue and
	// the log's storage, and exclusively by Close to shut them.
	mu     sync.RWMutex
	closed bool // guarded by mu
}

// appendSync enqueues r and waits for the writer's outcome or ctx.
func (a *appender) appendSync(ctx context.Context, r Record) error {
	done := make(chan error, 1)
	if err := a.enqueue(ctx, r, done); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("append audit record: %w", ctx.Err())
	}
}

// enqueue validates r and puts it on the writer's queue, waiting while the
// queue is full unless ctx ends.
func (a *appender) enqueue(ctx context.Context, r Record, done chan error) error {
	r = r.normalize(time.Now())
	if err := r.validate(); err != nil {
		return fmt.Errorf("append audit record: %w", err)
	}

	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return ErrClosed
	}
	if err := a.brokenErr(); err != nil {
		return err
	}
	select {
	case a.queue <- request{rec: r, done: done}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("append audit record: %w", ctx.Err())
	}
}

// isClosed reports whether Close has begun.
func (a *appender) isClosed() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.closed
}

// shut marks the log closed and closes the queue, so the writer drains it
// and returns. It reports false if the log was closed already.
func (a *appender) shut() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.closed = true
	close(a.queue)
	return true
}

// brokenErr returns the error that stopped the writer, or nil.
func (a *appender) brokenErr() error {
	if p := a.broken.Load(); p != nil {
		return *p
	}
	return nil
}
