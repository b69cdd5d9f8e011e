package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// Defaults for Options.
const (
	DefaultQueueSize = 4096
	DefaultMaxBatch  = 1024
)

// Keys of the package's structured log records.
const (
	logSubsystem = "subsystem"
	logPath      = "path"
	logBytes     = "bytes"
	logSeq       = "seq"
	logError     = "err"
)

// Options tune a File. The zero value is ready to use.
type Options struct {
	// Logger receives crash repairs and head write failures. Nil discards.
	Logger *slog.Logger

	// QueueSize is how many records Append can queue ahead of the writer
	// before it blocks. Zero means DefaultQueueSize.
	QueueSize int

	// MaxBatch caps the records written and fsynced together. Zero means
	// DefaultMaxBatch.
	MaxBatch int

	// MaxFileBytes, if set, rotates the log once it has grown past that
	// many bytes: the file becomes a segment beside it and a new one
	// continues the chain (see segment.go). Zero never rotates.
	MaxFileBytes int64
}

func (o *Options) validate() error {
	if o.QueueSize < 0 || o.MaxBatch < 0 || o.MaxFileBytes < 0 {
		return fmt.Errorf("audit options: %w: negative QueueSize, MaxBatch or MaxFileBytes", ErrInvalid)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	return nil
}

// File is a Log kept in a local file by OpenFile.
//
// Append hands records to a background writer through a bounded queue.
// When the queue is full Append blocks until the writer has taken a batch,
// which is at most about one fsync: records are never dropped, so a disk
// that stalls stalls the callers with it rather than letting requests pass
// unrecorded.
//
// With Options.MaxFileBytes the log is rotated into segments (segment.go);
// Query and Verify still read every record, so their time grows with the
// whole trail.
type File struct {
	path     string
	headPath string
	key      []byte // the audit key, for Verify's own chainer
	log      *slog.Logger
	maxBytes int64 // Options.MaxFileBytes

	// f is the live log, opened for appending; written only by the
	// writer. fmu is held shared by readers of f and exclusively by the
	// writer while rotation swaps it.
	fmu sync.RWMutex
	f   *os.File

	// size is the length of the complete lines written so far. Readers
	// read no further, so they never see a line being written.
	size atomic.Int64

	appender               // the queue to the writer; broken by a write or sync error
	done     chan struct{} // closed when the writer has returned
}

var _ Log = (*File)(nil)

// Append queues r to be written and returns without waiting for the disk.
// The record is durable after a later AppendSync or Close returns. The
// error wraps ErrInvalid, ErrBroken or is ErrClosed.
func (l *File) Append(r Record) error {
	return l.enqueue(context.Background(), r, nil)
}

// AppendSync writes r and returns once it, and everything appended before
// it, has been fsynced. If ctx ends first the error wraps ctx.Err(), and r
// may or may not still be written.
func (l *File) AppendSync(ctx context.Context, r Record) error {
	return l.appendSync(ctx, r)
}

// Query returns the records matching f, oldest first. It reads every
// record written so far, durable or not, and does not check the chain;
// Verify does. A line that does not parse fails the query with an error
// wrapping ErrTampered.
func (l *File) Query(f Filter) ([]Record, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	l.fmu.RLock()
	defer l.fmu.RUnlock()
	r, segs, err := l.records()
	if err != nil {
		return nil, err
	}
	defer closeAll(segs)
	return query(r, f)
}

// records returns every record written so far, the segments' and then
// the live file's complete lines, and the segment files to close. l.fmu is
// held shared.
func (l *File) records() (io.Reader, []*os.File, error) {
	segs, err := openSegments(l.path)
	if err != nil {
		return nil, nil, err
	}
	return chainReader(segs, io.NewSectionReader(l.f, 0, l.size.Load())), segs, nil
}

// Verify checks every record written so far against the chain and the
// head file. See Log.Verify.
func (l *File) Verify() (Report, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Report{}, ErrClosed
	}
	l.fmu.RLock()
	defer l.fmu.RUnlock()
	var segs []*os.File
	defer func() { closeAll(segs) }()
	return verifyFiles(l.path, l.key, func() (r io.Reader, err error) {
		r, segs, err = l.records()
		return r, err
	})
}

// Close waits until every queued record is written and fsynced, then
// closes the file. It returns the error that broke the log, if one did.
// Calls after the first return nil.
func (l *File) Close() error {
	if !l.shut() {
		return nil
	}
	<-l.done
	// Closing the file also releases its lock.
	return errors.Join(l.brokenErr(), l.f.Close())
}
