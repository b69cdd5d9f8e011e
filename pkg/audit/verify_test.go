package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestVerifyGood(t *testing.T) {
	tests := []struct {
		name string
		n    int
	}{
		{"empty", 0},
		{"one", 1},
		{"many", 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, tt.n)
			rep, err := VerifyFile(path, testKey(t))
			if err != nil || !rep.OK || rep.Records != tt.n || rep.HeadSeq != uint64(tt.n) || rep.Failure != nil {
				t.Fatalf("VerifyFile = %+v, %v", rep, err)
			}
			rep2, err := mustOpen(t, path).Verify()
			if err != nil || rep2 != rep {
				t.Fatalf("File.Verify = %+v, %v; VerifyFile said %+v", rep2, err, rep)
			}
		})
	}
}

// TestVerifyEveryByte changes each byte of a small log in turn, in several
// ways, and requires each changed log to fail verification, both by
// VerifyFile and when opened.
func TestVerifyEveryByte(t *testing.T) {
	path := writeLog(t, 4)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	reasons := map[Reason]int{}

	for i := range orig {
		for _, mask := range []byte{0x01, 0x20, 0x80} {
			b := bytes.Clone(orig)
			b[i] ^= mask
			writeFile(t, path, b)

			rep, err := VerifyFile(path, key)
			if !errors.Is(err, ErrTampered) || rep.OK || rep.Failure == nil {
				t.Fatalf("byte %d (%q) ^ %#x: VerifyFile = %+v, %v; want ErrTampered", i, orig[i], mask, rep, err)
			}
			reasons[rep.Failure.Reason]++

			// The last line must not pass as torn and be cut off: the head
			// names its record, so OpenFile refuses and changes nothing.
			if i >= bytes.LastIndexByte(orig[:len(orig)-1], '\n') {
				assertOpenRefused(t, path, b)
			}
		}
	}
	t.Logf("failures by reason: %v", reasons)
}

// assertOpenRefused checks that OpenFile fails with ErrTampered on the log
// at path and leaves its content, want, as it was.
func assertOpenRefused(t *testing.T, path string, want []byte) {
	t.Helper()
	if l, err := OpenFile(path, testKey(t), Options{}); !errors.Is(err, ErrTampered) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("OpenFile = %v, want ErrTampered", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Fatalf("OpenFile changed a log it refused")
	}
}

// TestVerifyEdits makes whole-record and formatting edits and checks that
// the first bad line is named with the right reason.
func TestVerifyEdits(t *testing.T) {
	const n = 6
	tests := []struct {
		name     string
		edit     func(lines [][]byte) [][]byte
		line     int
		reason   Reason
		openFail bool // OpenFile refuses too; it checks only the tail
	}{
		{
			name:   "delete middle",
			edit:   func(l [][]byte) [][]byte { return append(l[:2:2], l[3:]...) },
			line:   3,
			reason: ReasonSeqGap,
		},
		{
			name:   "delete first",
			edit:   func(l [][]byte) [][]byte { return l[1:] },
			line:   1,
			reason: ReasonSeqGap,
		},
		{
			name:   "swap two",
			edit:   func(l [][]byte) [][]byte { l[1], l[3] = l[3], l[1]; return l },
			line:   2,
			reason: ReasonSeqGap,
		},
		{
			name:   "duplicate one",
			edit:   func(l [][]byte) [][]byte { return append(l[:3:3], l[2:]...) },
			line:   4,
			reason: ReasonSeqGap,
		},
		{
			name:     "delete last",
			edit:     func(l [][]byte) [][]byte { return l[:n-1] },
			line:     n,
			reason:   ReasonShorterThanHead,
			openFail: true,
		},
		{
			name:     "delete last three",
			edit:     func(l [][]byte) [][]byte { return l[:n-3] },
			line:     n - 2,
			reason:   ReasonShorterThanHead,
			openFail: true,
		},
		{
			name:     "delete all",
			edit:     func(l [][]byte) [][]byte { return nil },
			line:     1,
			reason:   ReasonShorterThanHead,
			openFail: true,
		},
		{
			name:   "change field",
			edit:   replaceIn(2, `"vault":"ci"`, `"vault":"cx"`),
			line:   3,
			reason: ReasonHashMismatch,
		},
		{
			name: "renumber after delete",
			edit: func(l [][]byte) [][]byte {
				l = append(l[:1:1], l[2:]...)
				l[1] = bytes.Replace(l[1], []byte(`"seq":3`), []byte(`"seq":2`), 1)
				return l
			},
			line:   2,
			reason: ReasonBrokenLink,
		},
		{
			name:   "uppercase hash",
			edit:   func(l [][]byte) [][]byte { return upperHash(l, 1) },
			line:   2,
			reason: ReasonHashMismatch,
		},
		{
			name:   "empty hash",
			edit:   func(l [][]byte) [][]byte { r := decodeT(l[1]); return replaceIn(1, r.Hash, "")(l) },
			line:   2,
			reason: ReasonHashMismatch,
		},
		{
			name:   "whitespace",
			edit:   replaceIn(0, `,"kind"`, `, "kind"`),
			line:   1,
			reason: ReasonNotCanonical,
		},
		{
			name:     "crlf on last line",
			edit:     replaceIn(n-1, "}\n", "}\r\n"),
			line:     n,
			reason:   ReasonNotCanonical,
			openFail: true,
		},
		{
			name:   "unknown field",
			edit:   replaceIn(4, `{"seq":5,`, `{"seq":5,"note":"hi",`),
			line:   5,
			reason: ReasonUnparsable,
		},
		{
			name:   "blank line inserted",
			edit:   func(l [][]byte) [][]byte { return append(l[:2:2], append([][]byte{[]byte("\n")}, l[2:]...)...) },
			line:   3,
			reason: ReasonUnparsable,
		},
		{
			name:   "forged with another key",
			edit:   forgeFrom(3),
			line:   4,
			reason: ReasonHashMismatch,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, n)
			b := bytes.Join(tt.edit(readLines(t, path)), nil)
			writeFile(t, path, b)

			rep, err := VerifyFile(path, testKey(t))
			if !errors.Is(err, ErrTampered) || rep.Failure == nil {
				t.Fatalf("VerifyFile = %+v, %v; want ErrTampered", rep, err)
			}
			if f := rep.Failure; f.Line != tt.line || f.Reason != tt.reason {
				t.Errorf("failure at line %d: %q (%s); want line %d: %q", f.Line, f.Reason, f.Detail, tt.line, tt.reason)
			}
			if rep.Records != tt.line-1 {
				t.Errorf("%d records verified before the failure, want %d", rep.Records, tt.line-1)
			}
			if tt.openFail {
				assertOpenRefused(t, path, b)
			}
		})
	}
}

// replaceIn returns an edit that replaces old with new in line i.
func replaceIn(i int, old, new string) func([][]byte) [][]byte {
	return func(l [][]byte) [][]byte {
		l[i] = bytes.Replace(l[i], []byte(old), []byte(new), 1)
		return l
	}
}

// upperHash rewrites the hash of line i in upper case hex, which decodes
// to the same bytes but is not what the log wrote.
func upperHash(l [][]byte, i int) [][]byte {
	h := decodeT(l[i]).Hash
	return replaceIn(i, h, strings.ToUpper(h))(l)
}

// forgeFrom returns an edit that changes line i and rebuilds the chain
// from there on with a key other than the log's, as an attacker without
// the key might.
func forgeFrom(i int) func([][]byte) [][]byte {
	return func(l [][]byte) [][]byte {
		c, _ := newChainer(bytes.Repeat([]byte{9}, KeySize))
		prev := decodeT(l[i-1]).Hash
		for j := i; j < len(l); j++ {
			r := decodeT(l[j])
			r.Prev, r.Detail = prev, "forged"
			body, _ := encodeBody(r)
			r.Hash = c.recordHash(prev, body)
			l[j], prev = appendLine(nil, body, r.Hash), r.Hash
		}
		return l
	}
}

func decodeT(line []byte) Record {
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		panic(err)
	}
	return r
}

func TestVerifyHead(t *testing.T) {
	const n = 4
	tests := []struct {
		name   string
		edit   func(t *testing.T, path string)
		reason Reason
		line   int
	}{
		{
			name:   "missing",
			edit:   func(t *testing.T, path string) { os.Remove(headPath(path)) },
			reason: ReasonNoHead,
		},
		{
			name:   "garbage",
			edit:   func(t *testing.T, path string) { writeFile(t, headPath(path), []byte("{")) },
			reason: ReasonBadHead,
		},
		{
			name: "rolled back without key",
			edit: func(t *testing.T, path string) {
				// An attacker copies seq and hash of an earlier record from
				// the log, but cannot make the MAC.
				r := decodeT(readLines(t, path)[1])
				h := head{Seq: r.Seq, Hash: r.Hash, MAC: strings.Repeat("0", 2*hashSize)}
				b, _ := json.Marshal(h)
				writeFile(t, headPath(path), b)
			},
			reason: ReasonBadHead,
		},
		{
			name: "names another hash",
			edit: func(t *testing.T, path string) {
				c, _ := newChainer(testKey(t))
				if err := writeHead(headPath(path), c, n, genesis); err != nil {
					t.Fatal(err)
				}
			},
			reason: ReasonHeadMismatch,
			line:   n,
		},
		{
			name:   "log deleted",
			edit:   func(t *testing.T, path string) { os.Remove(path) },
			reason: ReasonShorterThanHead,
			line:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, n)
			tt.edit(t, path)

			rep, err := VerifyFile(path, testKey(t))
			if !errors.Is(err, ErrTampered) || rep.Failure == nil {
				t.Fatalf("VerifyFile = %+v, %v; want ErrTampered", rep, err)
			}
			if rep.Failure.Reason != tt.reason || rep.Failure.Line != tt.line {
				t.Errorf("failure %+v, want line %d: %q", rep.Failure, tt.line, tt.reason)
			}
			if l, err := OpenFile(path, testKey(t), Options{}); !errors.Is(err, ErrTampered) {
				if err == nil {
					l.Close()
				}
				t.Errorf("OpenFile = %v, want ErrTampered", err)
			}
			if _, err := os.Stat(path); tt.name == "log deleted" && err == nil {
				t.Errorf("OpenFile recreated a log its head says is missing")
			}
		})
	}
}

func TestVerifyFileMissing(t *testing.T) {
	if _, err := VerifyFile(testPath(t), testKey(t)); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrTampered) {
		t.Errorf("VerifyFile of nothing = %v, want ErrNotExist", err)
	}
}
