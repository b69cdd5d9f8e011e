package audit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/keygate/keygate/internal/fsutil"
)

// Rotation. A File whose Options.MaxFileBytes is set moves its log aside
// once it has grown past that size: the file becomes a segment named
// PATH.SEQ, SEQ being its last record's seq in 20 digits, and a new, empty
// file takes PATH. The chain runs on across the files, so the first record
// of a new file names the last of the segment before it as prev, and the
// head keeps naming the newest record wherever it lies. Readers see the
// segments, oldest first, followed by the live file, as one log: Query and
// Verify read them in that order and a Failure's Line counts across them
// (it is still the record's seq). A segment is part of the trail: one that
// is removed or altered fails Verify like a changed line, so archive
// segments whole, never prune them.

// segmentDigits is the width of a segment's seq suffix, enough for any
// uint64 and sortable as text.
const segmentDigits = 20

// segmentPath is the name the log at path takes when it is rotated after
// record lastSeq.
func segmentPath(path string, lastSeq uint64) string {
	return fmt.Sprintf("%s.%0*d", path, segmentDigits, lastSeq)
}

// segments returns the rotated segments of the log at path, oldest first.
func segments(path string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("list audit log segments: %w", err)
	}
	prefix := filepath.Base(path) + "."
	var out []string
	for _, e := range entries {
		suffix, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || len(suffix) != segmentDigits || !e.Type().IsRegular() {
			continue
		}
		if _, err := strconv.ParseUint(suffix, 10, 64); err != nil {
			continue
		}
		out = append(out, filepath.Join(filepath.Dir(path), e.Name()))
	}
	slices.Sort(out)
	return out, nil
}

// openSegments opens every segment of the log at path for reading. The
// caller closes them.
func openSegments(path string) ([]*os.File, error) {
	names, err := segments(path)
	if err != nil {
		return nil, err
	}
	var fs []*os.File
	for _, n := range names {
		f, err := os.Open(n)
		if err != nil {
			closeAll(fs)
			return nil, fmt.Errorf("open audit log segment: %w", err)
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// chainReader returns the segments followed by live, as one stream.
func chainReader(segs []*os.File, live io.Reader) io.Reader {
	rs := make([]io.Reader, 0, len(segs)+1)
	for _, f := range segs {
		rs = append(rs, f)
	}
	return io.MultiReader(append(rs, live)...)
}

// lastSegmentLine returns the last complete line of the newest segment of
// the log at path, or nil if there is no segment.
func lastSegmentLine(path string) ([]byte, error) {
	names, err := segments(path)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	f, err := os.Open(names[len(names)-1])
	if err != nil {
		return nil, fmt.Errorf("open audit log segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	line, end, err := lastLine(f, fi.Size())
	if err == nil && (line == nil || end != fi.Size()) {
		// Segments are rotated whole, after an fsync.
		err = tampered(&Failure{Reason: ReasonUnparsable, Detail: "segment " + filepath.Base(f.Name()) + " does not end in a whole record"})
	}
	return line, err
}

// hasSegments reports whether the log at path has been rotated before.
func hasSegments(path string) (bool, error) {
	names, err := segments(path)
	return len(names) > 0, err
}

// rotate moves the live file aside as a segment ending at record seq and
// starts a new one. It runs on the writer, after the file and the head are
// synced up to seq. Readers are kept out while the file is swapped. If the
// new file cannot be made, the segment goes back to its place and the log
// carries on in it.
func (w *writer) rotate() error {
	l := w.l
	seg := segmentPath(l.path, w.seq)
	if _, err := os.Lstat(seg); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate audit log: %s exists", seg)
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	if err := os.Rename(l.path, seg); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err = lockFile(f); err != nil {
			f.Close()
			os.Remove(l.path)
		}
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(l.path))
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		if rerr := os.Rename(seg, l.path); rerr != nil {
			return fmt.Errorf("rotate audit log: %w: %w (and moving %s back: %v)", ErrBroken, err, seg, rerr)
		}
		return fmt.Errorf("rotate audit log: %w", err)
	}
	l.f.Close()
	l.f = f
	l.size.Store(0)
	l.log.Info("audit log rotated", logPath, seg, logSeq, w.seq)
	return nil
}
