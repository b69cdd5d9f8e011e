package ca

import (
	"container/list"
	"crypto/tls"
	"time"
)

// cacheEntry is one issued leaf.
type cacheEntry struct {
	key     string
	cert    *tls.Certificate
	renewAt time.Time // after it, less than a third of the validity remains
}

// lru is a least-recently-used map of leaves, bounded to max entries. It is
// not safe for concurrent use; Leaves guards it with its mutex.
type lru struct {
	max   int
	order *list.List               // of *cacheEntry, most recently used first
	items map[string]*list.Element // by cacheEntry.key
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the entry for key, or nil, and marks it most recently used.
func (c *lru) get(key string) *cacheEntry {
	el, ok := c.items[key]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

// put stores e, replacing any entry with the same key, and evicts the least
// recently used entries beyond the bound.
func (c *lru) put(e *cacheEntry) {
	if el, ok := c.items[e.key]; ok {
		el.Value = e
		c.order.MoveToFront(el)
		return
	}
	c.items[e.key] = c.order.PushFront(e)

	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*cacheEntry).key)
	}
}

// len returns the number of cached entries.
func (c *lru) len() int {
	return c.order.Len()
}
