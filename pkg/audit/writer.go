package audit

import (
	"errors"
	"fmt"
	"time"
)

// writer is the goroutine that owns the end of the chain. It alone assigns
// seqs and hashes, writes the file and replaces the head, so none of its
// fields need a lock.
type writer struct {
	l        *File
	c        *chainer
	maxBatch int

	seq  uint64 // seq of the last record written
	prev string // hash of the last record written

	batch       []request // reused between commits
	buf         []byte    // the lines of one commit, reused
	headFailed  bool      // the last head write failed; logged once per outage
	headPending bool      // records were synced since the head was written
	headAt      time.Time // when the head was last written
	syncPending bool      // records were written since the last fsync
	syncedAt    time.Time // when the file was last fsynced
	rotateAt    time.Time // no rotation before then: the last one failed
}

// headEvery bounds how often the head file is replaced under load. The
// head only guards against truncation of the log's tail, and replacing it
// (write, fsync, rename) costs more than the batch it follows, so under a
// steady stream of records it trails the log by at most this long. A batch
// with a record someone waits for (AppendSync), and Close, always write it.
const headEvery = 250 * time.Millisecond

// syncEvery bounds how long records appended without waiting (Append, the
// proxy's hot path) stay written but not fsynced. They are in the page
// cache, so a crash of keygated loses none of them; only a crash of the
// host can lose up to this much. AppendSync always fsyncs before it
// returns, and Close before it closes.
const syncEvery = 50 * time.Millisecond

// run commits batches until Close closes the queue and it is drained.
func (w *writer) run() {
	defer close(w.l.done)
	for {
		batch, open := w.collect()
		w.batch = batch
		if len(batch) > 0 {
			w.commit(batch)
		}
		w.flushDue(!open)
		if !open {
			return
		}
	}
}

// flushDue fsyncs and replaces the head when they are due, or now if all
// is set.
func (w *writer) flushDue(all bool) {
	if w.syncPending && (all || time.Since(w.syncedAt) >= syncEvery) {
		if err := w.sync(); err != nil {
			w.l.broken.CompareAndSwap(nil, &err)
			return
		}
	}
	if w.headPending && (all || time.Since(w.headAt) >= headEvery) {
		w.updateHead()
	}
}

// nextDue is how long until the next pending fsync or head update is
// due, and whether one is pending at all.
func (w *writer) nextDue() (time.Duration, bool) {
	var wait time.Duration
	pending := false
	if w.syncPending {
		wait, pending = syncEvery-time.Since(w.syncedAt), true
	}
	if w.headPending {
		if d := headEvery - time.Since(w.headAt); !pending || d < wait {
			wait = d
		}
		pending = true
	}
	return max(wait, 0), pending
}

// collect waits for one request, then takes whatever else is queued, up to
// maxBatch, without waiting. Records that arrive while a commit's fsync
// runs are thus taken together by the next one: that is the group commit.
// It reports false once the queue is closed and empty. While a head update
// is pending it waits no longer than until the update is due, returning an
// empty batch then.
func (w *writer) collect() ([]request, bool) {
	var due <-chan time.Time
	if wait, pending := w.nextDue(); pending {
		t := time.NewTimer(wait)
		defer t.Stop()
		due = t.C
	}
	var req request
	var ok bool
	select {
	case req, ok = <-w.l.queue:
	case <-due:
		return w.batch[:0], true
	}
	if !ok {
		return nil, false
	}
	batch := append(w.batch[:0], req)
	for len(batch) < w.maxBatch {
		select {
		case req, ok := <-w.l.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, req)
		default:
			return batch, true
		}
	}
	return batch, true
}

// commit chains and writes one batch and tells the waiters; a batch with
// a waiter is fsynced and named by the head first. Other batches are
// fsynced within syncEvery (flushDue).
func (w *writer) commit(batch []request) {
	defer clear(batch) // drop the records for the garbage collector

	if err := w.l.brokenErr(); err != nil {
		notify(batch, err)
		return
	}
	seq, prev := w.chain(batch)
	if err := w.write(); err != nil {
		w.l.broken.CompareAndSwap(nil, &err)
		notify(batch, err)
		return
	}

	w.seq, w.prev = seq, prev
	if waited(batch) {
		// Someone waits for durability: the records are fsynced, and the
		// head names them, before they are told, so truncating them away
		// is caught.
		if err := w.sync(); err != nil {
			w.l.broken.CompareAndSwap(nil, &err)
			notify(batch, err)
			return
		}
		w.updateHead()
	}
	if err := w.rotateIfDue(); err != nil {
		w.l.broken.CompareAndSwap(nil, &err)
		notify(batch, err)
		return
	}
	notify(batch, nil)
}

// rotateRetry is how long the writer waits after a failed rotation before
// it tries again; the log meanwhile grows in its current file.
const rotateRetry = time.Minute

// rotateIfDue rotates the log once it has passed Options.MaxFileBytes,
// after syncing it and writing the head, so that the segment is whole and
// durable and the head names its last record. A rotation that fails is
// logged and retried later; only one that leaves no file to write to
// breaks the log.
func (w *writer) rotateIfDue() error {
	l := w.l
	if l.maxBytes == 0 || l.size.Load() < l.maxBytes || time.Now().Before(w.rotateAt) {
		return nil
	}
	if w.syncPending {
		if err := w.sync(); err != nil {
			return err
		}
	}
	if w.headPending || w.headFailed { // not already written for this batch
		w.updateHead()
	}
	err := w.rotate()
	switch {
	case errors.Is(err, ErrBroken):
		return err
	case err != nil:
		w.rotateAt = time.Now().Add(rotateRetry)
		l.log.Error("audit log not rotated; it keeps growing in place", logPath, l.path, logError, err)
	}
	return nil
}

// waited reports whether a request of batch waits for its outcome.
func waited(batch []request) bool {
	for _, req := range batch {
		if req.done != nil {
			return true
		}
	}
	return false
}

// chain gives each record of batch its seq, prev and hash, appends its line
// to w.buf and returns the new end of the chain. A record that cannot be
// encoded gets an error and no seq.
func (w *writer) chain(batch []request) (uint64, string) {
	seq, prev := w.seq, w.prev
	w.buf = w.buf[:0]
	for i := range batch {
		r := &batch[i].rec
		r.Seq, r.Prev = seq+1, prev

		body, err := encodeBody(*r)
		if err != nil {
			// Not expected after validate; refuse the record, keep the chain.
			batch[i].err = err
			continue
		}
		r.Hash = w.c.recordHash(prev, body)
		w.buf = appendLine(w.buf, body, r.Hash)
		seq, prev = r.Seq, r.Hash
	}
	return seq, prev
}

// write appends w.buf to the file in one write and fsyncs it. Readers may
// see the lines once written, before the fsync.
func (w *writer) write() error {
	if _, err := w.l.f.Write(w.buf); err != nil {
		return fmt.Errorf("write audit log: %w: %w", ErrBroken, err)
	}
	w.l.size.Add(int64(len(w.buf)))
	w.syncPending = true
	return nil
}

// sync fsyncs the log; the head, which names only durable records, may be
// replaced after it.
func (w *writer) sync() error {
	// After a failed fsync the kernel may have dropped the dirty pages, so
	// a retry proves nothing (https://lwn.net/Articles/752063/): the log
	// stops instead.
	if err := w.l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w: %w", ErrBroken, err)
	}
	w.syncPending, w.syncedAt = false, time.Now()
	w.headPending = true
	return nil
}

// updateHead names the end of the chain in the head file. A failure leaves
// an older head, which weakens only truncation detection, so it is logged
// and the log carries on.
func (w *writer) updateHead() {
	w.headPending, w.headAt = false, time.Now()
	err := writeHead(w.l.headPath, w.c, w.seq, w.prev)
	switch {
	case err != nil && !w.headFailed:
		w.l.log.Error("audit head not updated", logPath, w.l.headPath, logSeq, w.seq, logError, err)
	case err == nil && w.headFailed:
		w.l.log.Info("audit head updated again", logPath, w.l.headPath, logSeq, w.seq)
	}
	w.headFailed = err != nil
}

// notify sends every request of batch that waits for it its outcome: its
// own error if it was refused, else err.
func notify(batch []request, err error) {
	for _, req := range batch {
		if req.done == nil {
			continue
		}
		if req.err != nil {
			req.done <- req.err
		} else {
			req.done <- err
		}
	}
}
