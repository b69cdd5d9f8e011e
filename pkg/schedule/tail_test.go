package schedule

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short", []string{"ab", "cd"}, "abcd"},
		{"exactly full", []string{"abcd", "efgh"}, "abcdefgh"},
		{"overflow", []string{"abcdef", "ghij"}, "cdefghij"},
		{"one big write", []string{strings.Repeat("x", 20) + "12345678"}, "12345678"},
		{"many small", strings.Split("abcdefghijklmnopqrstuvwxyz", ""), "stuvwxyz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTail(8)
			for _, w := range tt.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := string(tl.Bytes()); got != tt.want {
				t.Errorf("Bytes = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTailConcurrent(t *testing.T) {
	tl := newTail(1024)
	var wg sync.WaitGroup
	for _, c := range []byte("ab") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				tl.Write(bytes.Repeat([]byte{c}, 7))
			}
		}()
	}
	wg.Wait()
	if got := tl.Bytes(); len(got) != 1024 || strings.Trim(string(got), "ab") != "" {
		t.Errorf("got %d bytes: %q...", len(got), got[:20])
	}
}
