package lograte

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(time.Second)
	l.now = func() time.Time { return now }
	if ok, n := l.Allow(); !ok || n != 0 {
		t.Fatalf("first: %v %d", ok, n)
	}
	for range 5 {
		if ok, _ := l.Allow(); ok {
			t.Fatal("passed within the interval")
		}
	}
	now = now.Add(time.Second)
	if ok, n := l.Allow(); !ok || n != 5 {
		t.Fatalf("after the interval: %v, suppressed %d, want 5", ok, n)
	}
}
