package resolver

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// maxNegativeTTL caps how long a negative answer is cached, whatever the
// SOA record says: a name that starts to exist is seen soon.
const maxNegativeTTL = 5 * time.Minute

// cacheKey names one cached answer: a normalised name and a query type.
type cacheKey struct {
	name  string
	qtype uint16
}

// answer is what the resolver keeps of an upstream reply: enough to answer
// any sandbox's query for the same name and type, before the rebinding
// filter and pinning, which happen per query.
type answer struct {
	rcode int // dns.RcodeSuccess or dns.RcodeNameError

	// addrs are the distinct addresses at the end of the asked name's
	// CNAME chain, unfiltered; nil for a negative answer. Shared by every
	// query the answer serves: never modified.
	addrs []netip.Addr

	// expires is when the answer's TTL, counted from when it arrived,
	// runs out.
	expires time.Time
}

// ttl returns the answer's TTL at now, in whole seconds rounded up, so that
// a fresh answer carries its full TTL; 0 once it has expired.
func (a answer) ttl(now time.Time) uint32 {
	left := a.expires.Sub(now)
	if left <= 0 {
		return 0
	}
	return seconds(left + time.Second - 1)
}

// cache holds up to max answers until they expire. When it is full, the
// answer stored first is evicted; an expired answer stays until it is
// evicted or replaced, so memory is bounded by max, not by the TTLs.
type cache struct {
	max int

	mu      sync.RWMutex
	entries map[cacheKey]*list.Element // of *cacheEntry; guarded by mu
	order   *list.List                 // entries, first stored first; guarded by mu
}

type cacheEntry struct {
	key cacheKey
	ans answer
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]*list.Element), order: list.New()}
}

// get returns the answer for k if it is cached and live at now.
func (c *cache) get(k cacheKey, now time.Time) (answer, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()

	el, ok := c.entries[k]
	if !ok {
		return answer{}, false
	}
	ans := el.Value.(*cacheEntry).ans
	return ans, now.Before(ans.expires)
}

// put stores ans under k, replacing any answer there, and evicts the
// oldest answer if the cache is full.
func (c *cache) put(k cacheKey, ans answer) {
	c.mu.Lock()
	defer c.mu.Unlock()

	if el, ok := c.entries[k]; ok {
		el.Value.(*cacheEntry).ans = ans
		c.order.MoveToBack(el)
		return
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Front()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).key)
	}
	c.entries[k] = c.order.PushBack(&cacheEntry{key: k, ans: ans})
}
