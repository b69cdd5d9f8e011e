package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// rotatingLog writes n sample records, each waited for, to a log at path
// that rotates past maxBytes, and closes it.
func rotatingLog(t *testing.T, path string, from, n int, maxBytes int64) {
	t.Helper()
	l, err := OpenFile(path, testKey(t), Options{MaxFileBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < from+n; i++ {
		if err := l.AppendSync(context.Background(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustSegments(t *testing.T, path string) []string {
	t.Helper()
	segs, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// A rotating log spreads over segments and one live file, and reads back,
// verifies and reopens as one chain.
func TestRotation(t *testing.T) {
	path := testPath(t)
	rotatingLog(t, path, 0, 40, 2000)
	segs := mustSegments(t, path)
	if len(segs) < 3 {
		t.Fatalf("%d segments after 40 records of about 300 bytes at 2000 a file", len(segs))
	}
	for _, s := range segs {
		if fi, err := os.Stat(s); err != nil || fi.Size() < 2000 || fi.Mode().Perm() != 0o600 {
			t.Errorf("segment %s: %v, %v", filepath.Base(s), fi, err)
		}
	}
	if rep, err := VerifyFile(path, testKey(t)); err != nil || rep.Records != 40 {
		t.Fatalf("verify: %d records, %v", rep.Records, err)
	}

	// Reopened, it carries on the chain, and readers see every record.
	rotatingLog(t, path, 40, 20, 2000)
	l := mustOpen(t, path)
	recs, err := l.Query(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 60 {
		t.Fatalf("query: %d records, want 60", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.DurationMS != int64(i) {
			t.Fatalf("record %d: seq %d, sample %d", i, r.Seq, r.DurationMS)
		}
	}
	if rep, err := l.Verify(); err != nil || rep.Records != 60 || rep.HeadSeq != 60 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}

// A segment is part of the trail: a changed byte in one, or one removed,
// fails verification and a reopen.
func TestRotationTamper(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, segs []string)
		reason Reason
	}{
		{"changed byte in the oldest segment", func(t *testing.T, segs []string) {
			b, _ := os.ReadFile(segs[0])
			i := len(b) / 2
			for b[i] < 'a' || b[i] > 'y' { // a letter inside a record
				i++
			}
			b[i]++
			os.WriteFile(segs[0], b, 0o600)
		}, ""},
		{"oldest segment removed", func(t *testing.T, segs []string) { os.Remove(segs[0]) }, ReasonSeqGap},
		{"middle segment removed", func(t *testing.T, segs []string) { os.Remove(segs[1]) }, ReasonSeqGap},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := testPath(t)
			rotatingLog(t, path, 0, 40, 2000)
			tt.change(t, mustSegments(t, path))
			rep, err := VerifyFile(path, testKey(t))
			if !errors.Is(err, ErrTampered) || rep.Failure == nil {
				t.Fatalf("verify after the change: %+v, %v", rep, err)
			}
			if tt.reason != "" && rep.Failure.Reason != tt.reason {
				t.Errorf("reason %q, want %q", rep.Failure.Reason, tt.reason)
			}
		})
	}
}

// A crash between moving the live file aside and creating the next one
// leaves no live file: the log opens, continues the chain and verifies.
// An empty live file after a rotation is the same.
func TestRotationCrashBeforeNewFile(t *testing.T) {
	path := testPath(t)
	rotatingLog(t, path, 0, 40, 2000)
	// Move the live file's records into a segment as a rotation would.
	live, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) > 0 {
		if err := os.Rename(path, segmentPath(path, 40)); err != nil {
			t.Fatal(err)
		}
	} else {
		os.Remove(path)
	}
	rotatingLog(t, path, 40, 5, 0)
	if rep, err := VerifyFile(path, testKey(t)); err != nil || rep.Records != 45 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}

	// The live file truncated to nothing after the head named its records
	// is a truncation, not a rotation.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path, testKey(t), Options{}); !errors.Is(err, ErrTampered) {
		t.Fatalf("open of a truncated live file: %v", err)
	}
}

// Readers running while the writer rotates always see one whole chain.
func TestRotationConcurrentReaders(t *testing.T) {
	path := testPath(t)
	l, err := OpenFile(path, testKey(t), Options{MaxFileBytes: 4096, MaxBatch: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 300 {
			if err := l.Append(sample(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		if _, err := l.Query(Filter{}); err != nil {
			t.Fatalf("query during rotation: %v", err)
		}
		if _, err := l.Verify(); err != nil {
			t.Fatalf("verify during rotation: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := VerifyFile(path, testKey(t)); err != nil || rep.Records != 300 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	if n := len(mustSegments(t, path)); n < 10 {
		t.Fatalf("%d segments", n)
	}
}
