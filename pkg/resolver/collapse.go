package resolver

import (
	"errors"
	"sync"
)

// collapser runs one upstream exchange at a time per cache key: a query
// arriving while another for the same name and type is being resolved waits
// for that one's answer instead of asking upstream again. Sharing across
// sandboxes is safe because the upstream answer does not depend on who
// asked; each query still filters and pins it for its own sandbox.
type collapser struct {
	mu      sync.Mutex
	flights map[cacheKey]*flight // guarded by mu
}

// flight is one exchange in progress.
type flight struct {
	done    chan struct{} // closed when ans and err are set
	ans     answer
	err     error
	waiting int // queries waiting for it besides the first; guarded by the collapser's mu
}

// errFetchPanicked is what the queries waiting for a fetch that panicked
// get, while the panic goes up the first query's goroutine.
var errFetchPanicked = errors.New("upstream exchange panicked")

func newCollapser() *collapser {
	return &collapser{flights: make(map[cacheKey]*flight)}
}

// do returns the result of fetch, called once for all the concurrent calls
// with key k. shared is true for the calls that waited for another's fetch.
func (c *collapser) do(k cacheKey, fetch func() (answer, error)) (ans answer, shared bool, err error) {
	c.mu.Lock()
	if f, ok := c.flights[k]; ok {
		f.waiting++
		c.mu.Unlock()
		<-f.done
		return f.ans, true, f.err
	}
	f := &flight{done: make(chan struct{}), err: errFetchPanicked}
	c.flights[k] = f
	c.mu.Unlock()

	// Deferred so that waiters are released even if fetch panics.
	defer func() {
		c.mu.Lock()
		delete(c.flights, k)
		c.mu.Unlock()
		close(f.done)
	}()
	f.ans, f.err = fetch()
	return f.ans, false, f.err
}
