package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/internal/fsutil"
)

// OpenFile opens the audit log at path, creating it and its head file
// (path + ".head") if neither exists, and starts its writer. key is the
// audit key from DeriveKey. The directory must exist; one File at a time
// may hold a log, which OpenFile enforces with a lock on the file where the
// platform has one.
//
// OpenFile reads only the end of the log. It removes an incomplete final
// line left by a crash, as the package documentation describes, and checks
// the last record's hash and the head. It refuses, with an error wrapping
// ErrTampered, a log whose last record does not verify under key, a log
// shorter than its head or a head that is missing or bad, and then changes
// nothing, so the evidence stays for Verify and the operator. It does not
// check the rest of the chain: call Verify for that.
func OpenFile(path string, key []byte, opts Options) (*File, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	c, err := newChainer(key)
	if err != nil {
		return nil, err
	}

	l := &File{
		path:     path,
		headPath: headPath(path),
		key:      bytes.Clone(key),
		log:      opts.Logger.With(logSubsystem, "audit"),
		maxBytes: opts.MaxFileBytes,
		appender: appender{queue: make(chan request, opts.QueueSize)},
		done:     make(chan struct{}),
	}
	seq, last, err := l.open(c)
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}

	w := &writer{l: l, c: c, maxBatch: opts.MaxBatch, seq: seq, prev: last}
	go w.run()
	return l, nil
}

// open opens or creates the log file and its head, repairs a torn tail and
// returns the seq and hash of the last record.
func (l *File) open(c *chainer) (uint64, string, error) {
	// A temporary head is left only by a crash before its rename.
	if err := os.Remove(l.headPath + tmpSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, "", err
	}
	h, fail, err := loadHead(l.headPath, c)
	if err != nil {
		return 0, "", err
	}
	if fail != nil {
		return 0, "", tampered(fail)
	}

	// After a rotation the live file may be empty, or missing if a crash
	// came between moving it aside and creating its successor.
	rotated, err := hasSegments(l.path)
	if err != nil {
		return 0, "", err
	}
	if err := l.openLog(h != nil && h.Seq > 0 && !rotated); err != nil {
		return 0, "", err
	}
	seq, last, err := l.recoverTail(c, h)
	if err == nil && h == nil {
		// A new log, or one whose creation a crash interrupted.
		err = l.createHead(c)
	}
	if err != nil {
		l.f.Close()
		return 0, "", err
	}
	return seq, last, nil
}

// openLog opens the log file for appending and locks it. The log is created
// unless mustExist says the head names records it should hold.
func (l *File) openLog(mustExist bool) error {
	flag := os.O_RDWR | os.O_APPEND
	if !mustExist {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(l.path, flag, 0o600)
	if errors.Is(err, fs.ErrNotExist) && mustExist {
		return tampered(&Failure{Line: 1, Reason: ReasonShorterThanHead, Detail: "log file missing"})
	}
	if err != nil {
		return err
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return err
	}
	l.f = f
	return nil
}

// createHead writes the head of an empty log and makes the log and head
// directory entries durable.
func (l *File) createHead(c *chainer) error {
	if err := writeHead(l.headPath, c, 0, genesis); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(l.path))
}

// recoverTail checks the end of the log against h, the head (nil if there
// is none), truncates a torn final line that lies beyond it and returns the
// seq and hash of the last record. It changes nothing when it fails.
func (l *File) recoverTail(c *chainer, h *head) (uint64, string, error) {
	fi, err := l.f.Stat()
	if err != nil {
		return 0, "", err
	}
	line, end, err := lastLine(l.f, fi.Size())
	if err != nil {
		return 0, "", err
	}

	if line == nil {
		// Empty since a rotation: the last record is the newest
		// segment's.
		if line, err = lastSegmentLine(l.path); err != nil {
			return 0, "", err
		}
	}
	seq, last := uint64(0), genesis
	if line != nil {
		rec, fail := checkLastLine(c, line)
		if fail != nil {
			return 0, "", tampered(fail)
		}
		seq, last = rec.Seq, rec.Hash
	}
	if fail := checkTail(seq, last, h); fail != nil {
		return 0, "", tampered(fail)
	}

	if torn := fi.Size() - end; torn > 0 {
		if err := l.truncate(end, torn); err != nil {
			return 0, "", err
		}
	}
	l.size.Store(end)
	return seq, last, nil
}

// checkLastLine verifies the last complete line as far as it can without
// its predecessor: its form and its hash over its own prev. A wrong key
// fails here too.
func checkLastLine(c *chainer, line []byte) (Record, *Failure) {
	rec, body, fail := decodeLine(line)
	if fail == nil && !equalHash(rec.Hash, c.recordHash(rec.Prev, body)) {
		fail = &Failure{Reason: ReasonHashMismatch, Detail: "wrong key, or the record was changed"}
	}
	if fail != nil {
		fail.Detail = strings.TrimSuffix("last line: "+fail.Detail, ": ")
	}
	return rec, fail
}

// checkTail compares the last record, seq with hash last, with the head.
// A head behind the log is normal after a crash; one ahead of it, or one
// naming the last seq with another hash, is not.
func checkTail(seq uint64, last string, h *head) *Failure {
	switch {
	case h == nil && seq > 0:
		return &Failure{Reason: ReasonNoHead}
	case h == nil:
		return nil
	case h.Seq > seq:
		return &Failure{
			Line:   int(seq) + 1,
			Reason: ReasonShorterThanHead,
			Detail: fmt.Sprintf("log ends at seq %d, head names seq %d", seq, h.Seq),
		}
	case h.Seq == seq && !equalHash(h.Hash, last):
		return &Failure{Line: int(seq), Reason: ReasonHeadMismatch}
	}
	return nil
}

// truncate cuts the torn bytes after end off the log and syncs it.
func (l *File) truncate(end, torn int64) error {
	if err := l.f.Truncate(end); err != nil {
		return fmt.Errorf("repair torn tail: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("repair torn tail: %w", err)
	}
	l.log.Warn("audit log: removed incomplete final line left by an interrupted write",
		logPath, l.path, logBytes, torn)
	return nil
}

// lastLine finds the last complete line of the first size bytes of f. It
// returns that line, '\n' included, or nil if there is none, and the offset
// just past it, where a torn tail begins. It reads backwards in growing
// windows, so a normal log costs one small read.
func lastLine(f *os.File, size int64) ([]byte, int64, error) {
	for window := int64(64 << 10); ; window *= 2 {
		off := max(size-window, 0)
		buf := make([]byte, size-off)
		if _, err := f.ReadAt(buf, off); err != nil {
			return nil, 0, fmt.Errorf("read audit log tail: %w", err)
		}

		end := bytes.LastIndexByte(buf, lineEnd) + 1 // 0 if none in buf
		if end == 0 && off == 0 {
			return nil, 0, nil
		}
		if end == 0 {
			continue
		}
		if start := bytes.LastIndexByte(buf[:end-1], lineEnd) + 1; start > 0 || off == 0 {
			return buf[start:end], off + int64(end), nil
		}
		if int64(end) > maxLineBytes {
			return nil, 0, tampered(&Failure{Reason: ReasonUnparsable, Detail: "last line too long"})
		}
	}
}

// tampered wraps err, which reports content that does not verify, in
// ErrTampered.
func tampered(err error) error {
	return fmt.Errorf("%w: %w", err, ErrTampered)
}
