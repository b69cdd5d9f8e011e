package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAppendQueryRoundTrip(t *testing.T) {
	l := mustOpen(t, testPath(t))
	var want []Record
	for i := range 10 {
		if err := l.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, sample(i))
	}
	if err := l.AppendSync(context.Background(), sample(10)); err != nil {
		t.Fatal(err)
	}
	want = append(want, sample(10))

	got, err := l.Query(Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	prev := genesis
	for i, r := range got {
		if r.Seq != uint64(i+1) || r.Prev != prev || len(r.Hash) != 2*hashSize {
			t.Errorf("record %d: seq %d prev %.8s hash %q", i, r.Seq, r.Prev, r.Hash)
		}
		prev = r.Hash
		r.Seq, r.Prev, r.Hash = 0, "", ""
		if r != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, r, want[i])
		}
	}
}

func TestQueryFilter(t *testing.T) {
	l := mustOpen(t, testPath(t))
	for i := range 20 {
		if err := l.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.AppendSync(context.Background(), Record{Kind: KindDNSDeny, Time: baseTime}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		f    Filter
		want []uint64 // seqs
	}{
		{"all", Filter{}, seqRange(1, 21)},
		{"vault", Filter{Vault: "ci"}, []uint64{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}},
		{"since is inclusive", Filter{Since: baseTime.Add(17 * time.Minute)}, []uint64{18, 19, 20}},
		{"since future", Filter{Since: baseTime.Add(time.Hour)}, nil},
		{"kind", Filter{Kinds: []Kind{KindRequestDeny}}, []uint64{4, 9, 14, 19}},
		{"kinds", Filter{Kinds: []Kind{KindRequestDeny, KindDNSDeny}}, []uint64{4, 9, 14, 19, 21}},
		{"limit keeps newest", Filter{Limit: 3}, []uint64{19, 20, 21}},
		{"limit above count", Filter{Vault: "ci", Limit: 100}, []uint64{1, 3, 5, 7, 9, 11, 13, 15, 17, 19}},
		{"combined", Filter{Vault: "prod", Since: baseTime.Add(5 * time.Minute), Kinds: []Kind{KindRequestInject}, Limit: 1}, []uint64{18}},
		{"no vault match", Filter{Vault: "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := l.Query(tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.Seq)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("seqs %v, want %v", got, tt.want)
			}
		})
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func TestConcurrentAppends(t *testing.T) {
	const goroutines, each = 32, 200
	path := testPath(t)
	l, err := OpenFile(path, testKey(t), Options{QueueSize: 64, MaxBatch: 50})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r := sample(i)
				var err error
				if i%50 == 0 {
					err = l.AppendSync(context.Background(), r)
				} else {
					err = l.Append(r)
				}
				if err != nil {
					t.Errorf("goroutine %d: %v", g, err)
					return
				}
			}
		})
	}
	// Readers run alongside the writers and must never see a bad log.
	wg.Go(func() {
		for range 5 {
			if rep, err := l.Verify(); err != nil {
				t.Errorf("Verify during appends: %v (%+v)", err, rep)
			}
			if _, err := l.Query(Filter{Vault: "ci"}); err != nil {
				t.Errorf("Query during appends: %v", err)
			}
		}
	})
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	rep, err := VerifyFile(path, testKey(t))
	if err != nil || rep.Records != goroutines*each || rep.HeadSeq != goroutines*each {
		t.Fatalf("VerifyFile = %+v, %v; want %d records", rep, err, goroutines*each)
	}
}

func TestCloseFlushes(t *testing.T) {
	path := testPath(t)
	l, err := OpenFile(path, testKey(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := l.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	if n := len(readLines(t, path)); n != 1000 {
		t.Fatalf("%d lines after Close, want 1000", n)
	}
	rep, err := VerifyFile(path, testKey(t))
	if err != nil || rep.HeadSeq != 1000 {
		t.Fatalf("VerifyFile = %+v, %v", rep, err)
	}
}

// TestAppendSyncDurable checks that the record is in the file, fsynced and
// named by the head, when AppendSync returns, before any Close.
func TestAppendSyncDurable(t *testing.T) {
	path := testPath(t)
	l := mustOpen(t, path)
	rec := Record{Kind: KindCredentialRotate, Vault: "ci", Credential: "github", Actor: "uid:0"}
	if err := l.AppendSync(context.Background(), rec); err != nil {
		t.Fatal(err)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"kind":"credential.rotate"`)) {
		t.Fatalf("record not in file after AppendSync: %q", b)
	}
	// The head is written just after the waiters are told; give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rep, err := VerifyFile(path, testKey(t))
		if err != nil {
			t.Fatalf("VerifyFile: %v", err)
		}
		if rep.HeadSeq == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("head still at %d", rep.HeadSeq)
		}
		time.Sleep(time.Millisecond)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := mustOpen(t, path).Query(Filter{Vault: "ci"})
	if err != nil || len(got) != 1 || got[0].Kind != KindCredentialRotate {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path := writeLog(t, 5)
	l := mustOpen(t, path)
	if err := l.AppendSync(context.Background(), sample(5)); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify()
	if err != nil || rep.Records != 6 || !rep.OK {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestClosed(t *testing.T) {
	l := mustOpen(t, testPath(t))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}

	tests := []struct {
		name string
		call func() error
	}{
		{"Append", func() error { return l.Append(sample(0)) }},
		{"AppendSync", func() error { return l.AppendSync(context.Background(), sample(0)) }},
		{"Query", func() error { _, err := l.Query(Filter{}); return err }},
		{"Verify", func() error { _, err := l.Verify(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", tt.name, err)
			}
		})
	}
}

func TestAppendInvalid(t *testing.T) {
	l := mustOpen(t, testPath(t))
	if err := l.Append(Record{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Append without kind = %v, want ErrInvalid", err)
	}
	if err := l.AppendSync(context.Background(), sample(0)); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(); err != nil || rep.Records != 1 {
		t.Errorf("Verify = %+v, %v; the invalid record must take no seq", rep, err)
	}
}

func TestAppendSyncContext(t *testing.T) {
	l := mustOpen(t, testPath(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Either outcome is allowed for a dead context, but not a hang, and a
	// failure must say why.
	if err := l.AppendSync(ctx, sample(0)); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("AppendSync(canceled) = %v", err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := testPath(t)
	mustOpen(t, path)
	if l, err := OpenFile(path, testKey(t), Options{}); err == nil {
		l.Close()
		t.Fatal("second OpenFile of the same log succeeded")
	}
}

func TestOpenWrongKey(t *testing.T) {
	path := writeLog(t, 3)
	other, err := DeriveKey(bytes.Repeat([]byte{8}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFile(path, other, Options{}); !errors.Is(err, ErrTampered) {
		t.Errorf("OpenFile with another key = %v, want ErrTampered", err)
	}
	if _, err := VerifyFile(path, other); !errors.Is(err, ErrTampered) {
		t.Errorf("VerifyFile with another key = %v, want ErrTampered", err)
	}
}

func TestDeriveKey(t *testing.T) {
	master := bytes.Repeat([]byte{1}, KeySize)
	a, err := DeriveKey(master)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DeriveKey(master)
	c, _ := DeriveKey(bytes.Repeat([]byte{2}, KeySize))
	if len(a) != KeySize || !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, master) {
		t.Errorf("DeriveKey not a deterministic, key-dependent %d-byte key", KeySize)
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := DeriveKey(make([]byte, n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DeriveKey(%d bytes) = %v, want ErrInvalid", n, err)
		}
	}
	if _, err := OpenFile(testPath(t), master[:16], Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("OpenFile with a short key = %v, want ErrInvalid", err)
	}
}
