package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Reason says why a log failed verification.
type Reason string

// Reasons a Failure gives.
const (
	ReasonUnparsable      Reason = "unparsable line"
	ReasonNotCanonical    Reason = "line not in canonical form"
	ReasonSeqGap          Reason = "seq out of sequence"
	ReasonBrokenLink      Reason = "prev does not match the previous hash"
	ReasonHashMismatch    Reason = "hash mismatch"
	ReasonShorterThanHead Reason = "log shorter than its head"
	ReasonHeadMismatch    Reason = "record differs from the one its head names"
	ReasonBadHead         Reason = "head file does not verify"
	ReasonNoHead          Reason = "head file missing"
	ReasonWrongChain      Reason = "record belongs to another host's chain"
	ReasonBeyondHead      Reason = "records beyond the head"
	ReasonBadBase         Reason = "chain base does not verify"
	ReasonExportMismatch  Reason = "records moved out of etcd differ from the chain's base"
)

// Report is the outcome of verifying a log.
type Report struct {
	OK        bool     `json:"ok"`                   // every record verified and the head agrees
	Records   int      `json:"records"`              // records verified, from the first, before any failure
	LastHash  string   `json:"last_hash,omitempty"`  // hash of the last verified record
	HeadSeq   uint64   `json:"head_seq"`             // seq the head file names
	TornBytes int      `json:"torn_bytes,omitempty"` // incomplete final line beyond the head; not a failure
	Failure   *Failure `json:"failure,omitempty"`    // the first failure; nil if OK
}

// Failure names the first thing in a log that does not verify.
type Failure struct {
	// Line is the 1-based line of the first bad record. Seqs start at 1
	// and grow by one per line, so it is also the seq that record should
	// carry. For ReasonShorterThanHead it is the first missing line; it is
	// 0 when the head file itself is bad or missing.
	Line   int    `json:"line"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail,omitempty"` // specifics, such as the seq found
	// Chain names the host chain that failed in a log of several (Etcd);
	// "" for a File.
	Chain string `json:"chain,omitempty"`
}

// Error describes the failure; it lets a *Failure pass through functions
// that return errors before a line number is known.
func (f *Failure) Error() string {
	if f.Detail == "" {
		return string(f.Reason)
	}
	return string(f.Reason) + ": " + f.Detail
}

// VerifyFile verifies the log at path, and its head, without opening it for
// writing: nothing is repaired, and an incomplete final line is counted in
// TornBytes, not failed, when it lies beyond the head. It is safe to run
// while another process appends. The error wraps ErrTampered exactly when
// the report has a failure.
func VerifyFile(path string, key []byte) (Report, error) {
	var files []*os.File
	defer func() { closeAll(files) }()
	return verifyFiles(path, key, func() (io.Reader, error) {
		// The live file first, then the segments: a rotation in between
		// shows the file just opened among the segments, where it is
		// read once.
		f, err := os.Open(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		segs, serr := openSegments(path)
		if serr != nil {
			if f != nil {
				f.Close()
			}
			return nil, serr
		}
		files = segs
		if f == nil {
			if len(segs) == 0 {
				return nil, nil
			}
			// Rotated, and a crash came before the next file was made.
			return chainReader(segs, bytes.NewReader(nil)), nil
		}
		files = append(files, f)
		if n := len(segs); n > 0 && sameFile(segs[n-1], f) {
			return chainReader(segs, bytes.NewReader(nil)), nil
		}
		return chainReader(segs, f), nil
	})
}

// sameFile reports whether a and b are open on the same file.
func sameFile(a, b *os.File) bool {
	ai, err1 := a.Stat()
	bi, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}

// verifyFiles verifies the log at path against its head. openLog, called
// after the head is read, returns the log's content, or nil if there is no
// log. Reading the head first means the log read is at least as long as
// the one the head was written for, even while a writer appends.
func verifyFiles(path string, key []byte, openLog func() (io.Reader, error)) (Report, error) {
	c, err := newChainer(key)
	if err != nil {
		return Report{}, err
	}
	h, fail, err := loadHead(headPath(path), c)
	if err != nil {
		return Report{}, err
	}
	if fail != nil {
		return result(path, Report{Failure: fail})
	}

	r, err := openLog()
	if err != nil {
		return Report{}, fmt.Errorf("verify audit log: %w", err)
	}
	if r == nil && h == nil {
		return Report{}, fmt.Errorf("verify audit log %s: %w", path, fs.ErrNotExist)
	}
	if r == nil {
		r = bytes.NewReader(nil)
	}
	return result(path, verifyLog(r, c, h))
}

// loadHead reads the head for a verification. A missing head is nil, not
// an error; a head that does not verify is returned as the failure to
// report; the error is for I/O.
func loadHead(path string, c *chainer) (*head, *Failure, error) {
	h, err := readHead(path, c)
	var fail *Failure
	switch {
	case err == nil:
		return &h, nil, nil
	case errors.Is(err, errNoHead):
		return nil, nil, nil
	case errors.As(err, &fail):
		return nil, fail, nil
	default:
		return nil, nil, err
	}
}

// result turns a report into Verify's return values.
func result(path string, rep Report) (Report, error) {
	if rep.Failure == nil {
		rep.OK = true
		return rep, nil
	}
	return rep, fmt.Errorf("verify audit log %s: line %d: %w: %w", path, rep.Failure.Line, rep.Failure, ErrTampered)
}

// verifyLog checks every line of r against the chain under c and against
// h, the head (nil if there is none), and returns the report. It stops at
// the first failure.
func verifyLog(r io.Reader, c *chainer, h *head) Report {
	var rep Report
	if h != nil {
		rep.HeadSeq = h.Seq
	}

	prev := genesis
	lines := newLineScanner(r)
	for lines.Scan() {
		line := lines.Bytes()
		if line[len(line)-1] != lineEnd {
			rep.TornBytes = len(line)
			break
		}

		n := rep.Records + 1
		rec, fail := verifyLine(c, line, n, prev)
		if fail == nil && h != nil && uint64(n) == h.Seq && !equalHash(rec.Hash, h.Hash) {
			fail = &Failure{Reason: ReasonHeadMismatch}
		}
		if fail != nil {
			fail.Line = n
			rep.Failure = fail
			return rep
		}
		prev = rec.Hash
		rep.Records, rep.LastHash = n, rec.Hash
	}
	if err := lines.Err(); err != nil {
		rep.Failure = &Failure{Line: rep.Records + 1, Reason: ReasonUnparsable, Detail: err.Error()}
		return rep
	}

	rep.Failure = checkTail(uint64(rep.Records), prev, h)
	return rep
}

// verifyLine checks one line that should hold record n, whose predecessor
// has hash prev.
func verifyLine(c *chainer, line []byte, n int, prev string) (Record, *Failure) {
	rec, body, fail := decodeLine(line)
	switch {
	case fail != nil:
		return Record{}, fail
	case rec.Seq != uint64(n):
		return Record{}, &Failure{Reason: ReasonSeqGap, Detail: fmt.Sprintf("seq %d, want %d", rec.Seq, n)}
	case !equalHash(rec.Prev, prev):
		return Record{}, &Failure{Reason: ReasonBrokenLink}
	case !equalHash(rec.Hash, c.recordHash(rec.Prev, body)):
		return Record{}, &Failure{Reason: ReasonHashMismatch}
	}
	return rec, nil
}

// newLineScanner splits r into lines that keep their '\n', so a caller can
// tell a final line without one. Unlike bufio.ScanLines it strips nothing,
// not even a '\r': every byte of the file reaches the verifier.
func newLineScanner(r io.Reader) *bufio.Scanner {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	s.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, lineEnd); i >= 0 {
			return i + 1, data[:i+1], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	return s
}
