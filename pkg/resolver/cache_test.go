package resolver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestCacheGetPut(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newCache(3)
	key := func(i int) cacheKey { return cacheKey{name: fmt.Sprintf("h%d.test", i), qtype: 1} }
	ans := func(ttl time.Duration) answer {
		return answer{addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}, expires: now.Add(ttl)}
	}

	c.put(key(0), ans(time.Minute))
	c.put(key(1), ans(time.Second))
	c.put(key(2), ans(time.Minute))
	c.put(key(0), ans(time.Hour)) // replaces, and now counts as stored last
	c.put(key(3), ans(time.Minute))

	tests := []struct {
		name string
		key  cacheKey
		at   time.Duration
		want bool
	}{
		{"replaced entry kept", key(0), 30 * time.Minute, true},
		{"oldest evicted", key(1), 0, false},
		{"live", key(2), 59 * time.Second, true},
		{"expired", key(2), time.Minute, false},
		{"newest", key(3), 0, true},
		{"never stored", key(9), 0, false},
		{"other type", cacheKey{name: "h3.test", qtype: 28}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := c.get(tt.key, now.Add(tt.at)); ok != tt.want {
				t.Errorf("get(%v) at +%v: ok = %v, want %v", tt.key, tt.at, ok, tt.want)
			}
		})
	}
	if got := c.order.Len(); got != 3 {
		t.Errorf("cache holds %d answers, want the bound 3", got)
	}
}

func TestAnswerTTLRoundsUp(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		left time.Duration
		want uint32
	}{
		{300 * time.Second, 300},
		{299*time.Second + time.Millisecond, 300},
		{time.Millisecond, 1},
		{0, 0},
		{-time.Second, 0},
	}
	for _, tt := range tests {
		if got := (answer{expires: now.Add(tt.left)}).ttl(now); got != tt.want {
			t.Errorf("ttl with %v left = %d, want %d", tt.left, got, tt.want)
		}
	}
}
