package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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
}

func (o *Options) validate() error {
	if o.QueueSize < 0 || o.MaxBatch < 0 {
		return fmt.Errorf("audit options: %w: negative QueueSize or MaxBatch", ErrInvalid)
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
// TODO: the file is never rotated, so its size, and the time Query and
// Verify take, grow with every record: about 300 bytes each, some 9 GB a
// year at one record a second. Rotation needs the first record of a new
// file to chain to the last of the old one, and a verifier that walks the
// sequence of files.
type File struct {
	path     string
	headPath string
	key      []byte // the audit key, for Verify's own chainer
	log      *slog.Logger
	f        *os.File // the log, opened for appending; written only by the writer

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
	return query(io.NewSectionReader(l.f, 0, l.size.Load()), f)
}

// Verify checks every record written so far against the chain and the
// head file. See Log.Verify.
func (l *File) Verify() (Report, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return Report{}, ErrClosed
	}
	return verifyFiles(l.path, l.key, func() (io.Reader, error) {
		return io.NewSectionReader(l.f, 0, l.size.Load()), nil
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
