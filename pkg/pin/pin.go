// Package pin records which names keygate's DNS resolver gave each sandbox
// for each address, so that the TLS proxy can refuse a connection whose SNI
// name was not resolved to the dialled address for that same sandbox.
//
// A pin is the triple (sandbox, address, name) with an expiry. The resolver
// adds one for every address it returns; the proxy checks one per
// connection, when the connection is made. An expiry therefore never cuts a
// connection already established: it only stops new ones.
//
// A pin lives at least a configured floor, longer than the DNS TTL when the
// TTL is short, so that a client which caches an answer a little longer than
// told still finds its pin; and at most a configured maximum, so that an
// answer with a TTL of weeks does not pin an address for weeks. The resolver
// caps the TTLs it hands out at that maximum, so a well-behaved client never
// caches an answer longer than its pin lives.
//
// The table is bounded. When it is full, a pin of the sandbox holding the
// most pins is evicted, the one that expires first: a sandbox resolving
// names without end evicts its own pins, not those of the others.
package pin

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/keygate/keygate/pkg/domain"
)

const (
	// DefaultFloor is the minimum pin lifetime used when Config.Floor is zero.
	DefaultFloor = 60 * time.Second

	// DefaultMaxLifetime is the maximum pin lifetime used when
	// Config.MaxLifetime is zero.
	DefaultMaxLifetime = time.Hour

	// DefaultMaxEntries is the table bound used when Config.MaxEntries is zero.
	DefaultMaxEntries = 100_000
)

// Config configures a Table.
type Config struct {
	// Floor is the minimum lifetime of a pin, whatever the TTL passed to
	// Add. Zero means DefaultFloor.
	Floor time.Duration

	// MaxLifetime is the maximum lifetime of a pin, whatever the TTL passed
	// to Add. Zero means DefaultMaxLifetime; a value below the floor is
	// raised to the floor.
	MaxLifetime time.Duration

	// MaxEntries bounds the number of (sandbox, address, name) pins held,
	// across all sandboxes. When the table is full, Add evicts a pin of the
	// sandbox holding the most: the one that expires first, the oldest
	// added among equals. Zero means DefaultMaxEntries.
	MaxEntries int

	// Now returns the current time. Nil means time.Now; tests pass a fake
	// clock.
	Now func() time.Time
}

// Table is a concurrency-safe set of pins. The zero value is not usable;
// create one with New.
type Table struct {
	floor   time.Duration
	maxLife time.Duration
	max     int
	now     func() time.Time

	mu sync.RWMutex
	// sandboxes holds the pins of each sandbox that has any. Guarded by mu.
	// A sandbox left without pins is deleted, so that memory follows the
	// live pin count.
	sandboxes map[string]*sandboxPins
	// n is the number of entries across sandboxes, live or not yet swept.
	// Guarded by mu.
	n int
	// seq numbers deadlines in the order they were scheduled, across all
	// sandboxes. Guarded by mu.
	seq uint64
}

// sandboxPins is the part of a Table that belongs to one sandbox. Its
// fields are guarded by the Table's mu.
type sandboxPins struct {
	// byAddr maps address → name → entry. Empty inner maps are deleted.
	byAddr map[netip.Addr]map[string]entry
	// n is the number of entries in byAddr.
	n int
	// expiries holds a deadline for every entry in byAddr, plus stale ones
	// for entries since extended.
	expiries queue
}

// entry is the current expiry of one pin and the seq of its live deadline.
type entry struct {
	expires time.Time
	seq     uint64
}

// New returns an empty Table configured by cfg.
func New(cfg Config) *Table {
	t := &Table{
		floor:     cfg.Floor,
		maxLife:   cfg.MaxLifetime,
		max:       cfg.MaxEntries,
		now:       cfg.Now,
		sandboxes: make(map[string]*sandboxPins),
	}
	if t.floor <= 0 {
		t.floor = DefaultFloor
	}
	if t.maxLife <= 0 {
		t.maxLife = DefaultMaxLifetime
	}
	t.maxLife = max(t.maxLife, t.floor)
	if t.max <= 0 {
		t.max = DefaultMaxEntries
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// MaxLifetime returns the longest a pin lives, however long the TTL passed
// to Add. A resolver caps the TTLs it returns at this, so that no client
// caches an address longer than its pin lives.
func (t *Table) MaxLifetime() time.Duration { return t.maxLife }

// Add pins name to addr for sandbox until now plus ttl, raised to the
// table's floor and capped at its maximum lifetime. The name is normalised
// and a v4-mapped v6 address is stored as v4. Adding an existing pin extends
// it; it never shortens it. An empty sandbox or name, or an invalid address,
// is ignored.
func (t *Table) Add(sandbox string, addr netip.Addr, name string, ttl time.Duration) {
	k, ok := makeKey(sandbox, addr, name)
	if !ok {
		return
	}
	now := t.now()
	expires := now.Add(min(max(ttl, t.floor), t.maxLife))

	t.mu.Lock()
	defer t.mu.Unlock()

	sb := t.sandboxes[sandbox]
	if sb == nil {
		sb = &sandboxPins{byAddr: make(map[netip.Addr]map[string]entry)}
		t.sandboxes[sandbox] = sb
	}
	t.n -= sb.sweep(now)
	if old, ok := sb.lookup(k); ok {
		if expires.After(old.expires) {
			t.seq++
			sb.store(k, expires, t.seq)
			sb.compact()
		}
		return
	}

	if t.n >= t.max {
		t.makeRoomLocked(now)
		t.sandboxes[sandbox] = sb // the sweep deletes it if it had no live pins
	}
	t.seq++
	sb.store(k, expires, t.seq)
	sb.n++
	t.n++
}

// Check reports whether sandbox holds a live pin of name to addr. The name is
// normalised and a v4-mapped v6 address is compared as v4, as in Add.
func (t *Table) Check(sandbox string, addr netip.Addr, name string) bool {
	k, ok := makeKey(sandbox, addr, name)
	if !ok {
		return false
	}
	now := t.now()

	t.mu.RLock()
	defer t.mu.RUnlock()

	sb := t.sandboxes[sandbox]
	if sb == nil {
		return false
	}
	e, ok := sb.lookup(k)
	return ok && now.Before(e.expires)
}

// Names returns, sorted, the names sandbox has live pins for at addr.
func (t *Table) Names(sandbox string, addr netip.Addr) []string {
	addr = addr.Unmap()
	now := t.now()

	t.mu.RLock()
	defer t.mu.RUnlock()

	sb := t.sandboxes[sandbox]
	if sb == nil {
		return nil
	}
	var names []string
	for name, e := range sb.byAddr[addr] {
		if now.Before(e.expires) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// DropSandbox forgets every pin of sandbox, for when the sandbox is removed.
func (t *Table) DropSandbox(sandbox string) {
	t.mu.Lock()
	defer t.mu.Unlock()

	if sb := t.sandboxes[sandbox]; sb != nil {
		t.n -= sb.n
		delete(t.sandboxes, sandbox)
	}
}

// Len returns the number of live pins.
func (t *Table) Len() int {
	now := t.now()

	t.mu.Lock()
	defer t.mu.Unlock()

	t.sweepLocked(now)
	return t.n
}

// makeRoomLocked removes at least one pin from a full table: every expired
// one if there are any, otherwise the first to expire of the sandbox
// holding the most pins. Its cost is proportional to the number of
// sandboxes plus the number of pins removed.
func (t *Table) makeRoomLocked(now time.Time) {
	t.sweepLocked(now)
	if t.n < t.max {
		return
	}
	var largest *sandboxPins
	for _, sb := range t.sandboxes {
		if largest == nil || sb.n > largest.n {
			largest = sb
		}
	}
	if largest != nil && largest.evict() {
		t.n--
	}
}

// sweepLocked removes every expired pin of every sandbox, and the sandboxes
// left with none.
func (t *Table) sweepLocked(now time.Time) {
	for id, sb := range t.sandboxes {
		t.n -= sb.sweep(now)
		if sb.n == 0 {
			delete(t.sandboxes, id)
		}
	}
}

// makeKey normalises the parts of a pin; ok is false if one is unusable.
func makeKey(sandbox string, addr netip.Addr, name string) (k key, ok bool) {
	name = domain.Normalize(name)
	if sandbox == "" || name == "" || !addr.IsValid() {
		return key{}, false
	}
	return key{addr: addr.Unmap(), name: name}, true
}

func (sb *sandboxPins) lookup(k key) (entry, bool) {
	e, ok := sb.byAddr[k.addr][k.name]
	return e, ok
}

// store sets the expiry of k and schedules it under seq. It does not count
// the entry; a caller storing a new pin increments n.
func (sb *sandboxPins) store(k key, expires time.Time, seq uint64) {
	names := sb.byAddr[k.addr]
	if names == nil {
		names = make(map[string]entry)
		sb.byAddr[k.addr] = names
	}
	names[k.name] = entry{expires: expires, seq: seq}
	sb.expiries.push(deadline{key: k, expires: expires, seq: seq})
}

// remove deletes k, pruning an empty address map, and uncounts it.
func (sb *sandboxPins) remove(k key) {
	names := sb.byAddr[k.addr]
	delete(names, k.name)
	if len(names) == 0 {
		delete(sb.byAddr, k.addr)
	}
	sb.n--
}

// current reports whether d is the live deadline of its pin rather than a
// stale one left by an extension.
func (sb *sandboxPins) current(d deadline) bool {
	e, ok := sb.lookup(d.key)
	return ok && e.seq == d.seq
}

// sweep removes every pin that expired at or before now and returns how
// many it removed. It only looks at the head of the expiry queue, so its
// cost is proportional to the number of deadlines it removes.
func (sb *sandboxPins) sweep(now time.Time) int {
	removed := 0
	for {
		d, ok := sb.expiries.peek()
		if !ok || now.Before(d.expires) {
			return removed
		}
		sb.expiries.pop()
		if sb.current(d) {
			sb.remove(d.key)
			removed++
		}
	}
}

// evict removes the pin that expires first and reports whether there was
// one to remove.
func (sb *sandboxPins) evict() bool {
	for sb.expiries.Len() > 0 {
		d := sb.expiries.pop()
		if sb.current(d) {
			sb.remove(d.key)
			return true
		}
	}
	return false
}

// compact drops stale deadlines once they outnumber live ones, so that
// repeated extensions cannot grow the queue without bound.
func (sb *sandboxPins) compact() {
	if sb.expiries.Len() <= 2*sb.n+64 {
		return
	}
	sb.expiries.filter(sb.current)
}
