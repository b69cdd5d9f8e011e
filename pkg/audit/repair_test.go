package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTornTailRepaired appends by hand what an interrupted write leaves:
// part of the next line, without its newline.
func TestTornTailRepaired(t *testing.T) {
	next := readLines(t, writeLog(t, 4))[3] // the line that would follow 3 records
	tests := []struct {
		name    string
		records int
		torn    []byte
	}{
		{"one byte", 3, next[:1]},
		{"half a line", 3, next[:len(next)/2]},
		{"all but the newline", 3, next[:len(next)-1]},
		{"zeros", 3, make([]byte, 100)},
		{"first line torn", 0, []byte(`{"seq":1,"ti`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, tt.records)
			orig, _ := os.ReadFile(path)
			writeFile(t, path, append(bytes.Clone(orig), tt.torn...))

			rep, err := VerifyFile(path, testKey(t))
			if err != nil || !rep.OK || rep.Records != tt.records || rep.TornBytes != len(tt.torn) {
				t.Fatalf("VerifyFile before repair = %+v, %v", rep, err)
			}

			var logs bytes.Buffer
			l, err := OpenFile(path, testKey(t), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("OpenFile: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
				t.Fatalf("after OpenFile the log is %q, want %q", got, orig)
			}
			if want := fmt.Sprintf("subsystem=audit path=%s bytes=%d", path, len(tt.torn)); !strings.Contains(logs.String(), want) {
				t.Errorf("repair log %q lacks %q", logs.String(), want)
			}
			if err := l.AppendSync(context.Background(), sample(tt.records)); err != nil {
				t.Fatal(err)
			}
			rep, err = l.Verify()
			if err != nil || rep.Records != tt.records+1 || rep.TornBytes != 0 {
				t.Fatalf("Verify after repair = %+v, %v", rep, err)
			}
		})
	}
}

// TestTornTailHeadBehind repairs a torn tail when a crash also kept the
// head from naming the last batch.
func TestTornTailHeadBehind(t *testing.T) {
	path := writeLog(t, 5)
	lines := readLines(t, path)
	c, _ := newChainer(testKey(t))
	if err := writeHead(headPath(path), c, 3, decodeT(lines[2]).Hash); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, append(bytes.Join(lines, nil), `{"seq":6`...))

	l := mustOpen(t, path)
	rep, err := l.Verify()
	if err != nil || rep.Records != 5 || rep.HeadSeq != 3 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// TestTornTailNotRepaired checks that OpenFile refuses, and leaves alone,
// a final line that lacks its newline when the head says that line's
// record was durable: that is not a torn write.
func TestTornTailNotRepaired(t *testing.T) {
	path := writeLog(t, 3)
	b, _ := os.ReadFile(path)
	b = b[:len(b)-1]
	writeFile(t, path, b)

	rep, err := VerifyFile(path, testKey(t))
	if !errors.Is(err, ErrTampered) || rep.Failure.Reason != ReasonShorterThanHead {
		t.Fatalf("VerifyFile = %+v, %v", rep, err)
	}
	assertOpenRefused(t, path, b)
}

const crashEnv = "AUDIT_TEST_CRASH_LOG"

// TestCrashMidBurst kills a process that appends as fast as it can with
// SIGKILL, several times over the same log, and requires the log to open
// and verify after each kill.
func TestCrashMidBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	path := testPath(t)
	total := 0
	for round := range 5 {
		killWriter(t, path, time.Duration(10+round*15)*time.Millisecond)

		l, err := OpenFile(path, testKey(t), Options{})
		if err != nil {
			t.Fatalf("round %d: OpenFile after kill: %v", round, err)
		}
		rep, err := l.Verify()
		if err != nil || rep.Records <= total {
			t.Fatalf("round %d: Verify after kill = %+v, %v (had %d)", round, rep, err, total)
		}
		total = rep.Records
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d records over 5 kills", total)
}

// killWriter runs TestCrashWriter in a child process on the log at path,
// lets it append for d after its first durable record and kills it.
func killWriter(t *testing.T, path string, d time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriter$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()

	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		cmd.Process.Kill()
		t.Fatalf("writer did not start: %q, %v", line, err)
	}
	time.Sleep(d)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// TestCrashWriter is the child of TestCrashMidBurst; it does nothing in a
// normal run.
func TestCrashWriter(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("only run by TestCrashMidBurst")
	}
	l, err := OpenFile(path, testKey(t), Options{MaxBatch: 256})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	// Long details make batches span pages, so a kill can land mid-write.
	r := sample(0)
	r.Detail = strings.Repeat("x", 2000)
	for i := 0; ; i++ {
		if i%100 == 0 {
			err = l.AppendSync(context.Background(), r)
		} else {
			err = l.Append(r)
		}
		if err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		// Ready only once a record is durable, so every round adds at
		// least one however slow the machine is.
		if i == 0 {
			fmt.Println("ready")
		}
	}
}
