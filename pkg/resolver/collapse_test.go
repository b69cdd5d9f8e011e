package resolver

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
)

func TestCollapserShares(t *testing.T) {
	c := newCollapser()
	k := cacheKey{name: "a.test", qtype: 1}
	release := make(chan struct{})
	want := answer{addrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}

	calls := 0
	fetch := func() (answer, error) {
		calls++ // only ever one fetch at a time for k
		<-release
		return want, nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	shared := 0
	for i := range 5 {
		wg.Go(func() {
			ans, s, err := c.do(k, fetch)
			if err != nil || len(ans.addrs) != 1 {
				t.Errorf("call %d: %v, %v", i, ans, err)
			}
			if s {
				mu.Lock()
				shared++
				mu.Unlock()
			}
		})
		if i == 0 {
			waitFor(t, func() bool { return lockedLen(c) == 1 })
		}
	}
	waitFor(t, func() bool { return c.waiters(k) == 4 })
	close(release)
	wg.Wait()

	if calls != 1 || shared != 4 {
		t.Errorf("%d fetches, %d shared results; want 1 and 4", calls, shared)
	}
	if lockedLen(c) != 0 {
		t.Error("a finished flight was kept")
	}

	// Once the flight is over, the next call fetches anew.
	if _, s, _ := c.do(k, func() (answer, error) { return answer{}, nil }); s {
		t.Error("a call after the flight ended shared its result")
	}
}

func TestCollapserSharesErrors(t *testing.T) {
	c := newCollapser()
	k := cacheKey{name: "a.test", qtype: 1}
	errBoom := errors.New("boom")
	release := make(chan struct{})

	errc := make(chan error, 2)
	go func() {
		_, _, err := c.do(k, func() (answer, error) { <-release; return answer{}, errBoom })
		errc <- err
	}()
	waitFor(t, func() bool { return lockedLen(c) == 1 })
	go func() {
		_, _, err := c.do(k, func() (answer, error) { t.Error("second fetch ran"); return answer{}, nil })
		errc <- err
	}()
	waitFor(t, func() bool { return c.waiters(k) == 1 })
	close(release)

	for range 2 {
		if err := <-errc; !errors.Is(err, errBoom) {
			t.Errorf("err = %v, want the fetch's", err)
		}
	}
}

func TestCollapserPanicReleasesWaiters(t *testing.T) {
	c := newCollapser()
	k := cacheKey{name: "a.test", qtype: 1}
	release := make(chan struct{})

	go func() {
		defer func() { _ = recover() }()
		_, _, _ = c.do(k, func() (answer, error) { <-release; panic("boom") })
	}()
	waitFor(t, func() bool { return lockedLen(c) == 1 })
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.do(k, func() (answer, error) { return answer{}, nil })
		errc <- err
	}()
	waitFor(t, func() bool { return c.waiters(k) == 1 })
	close(release)

	if err := <-errc; !errors.Is(err, errFetchPanicked) {
		t.Errorf("waiter got %v, want errFetchPanicked", err)
	}
}

// lockedLen returns the number of flights in progress.
func lockedLen(c *collapser) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.flights)
}
