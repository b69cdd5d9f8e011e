// Package pin records which names keygate's DNS resolver gave each sandbox
// for each address, so that the TLS proxy can refuse a connection whose SNI
// name was not resolved to the dialled address for that same sandbox.
//
// A pin is the triple (sandbox, address, name) with an expiry. The resolver
// adds one for every address it returns; the proxy checks one per
// connection. A pin lives at least a configured floor, longer than the DNS
// TTL when the TTL is short, so that a client which caches an answer a little
// longer than told still finds its pin. The table is bounded: when it is
// full, the pin closest to expiry is evicted to make room.
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

	// DefaultMaxEntries is the table bound used when Config.MaxEntries is zero.
	DefaultMaxEntries = 100_000
)

// Config configures a Table.
type Config struct {
	// Floor is the minimum lifetime of a pin, whatever the TTL passed to
	// Add. Zero means DefaultFloor.
	Floor time.Duration

	// MaxEntries bounds the number of (sandbox, address, name) pins held.
	// When the table is full, Add evicts the pin that expires first (the
	// oldest added among equals). Zero means DefaultMaxEntries.
	MaxEntries int

	// Now returns the current time. Nil means time.Now; tests pass a fake
	// clock.
	Now func() time.Time
}

// Table is a concurrency-safe set of pins. The zero value is not usable;
// create one with New.
type Table struct {
	floor time.Duration
	max   int
	now   func() time.Time

	mu sync.RWMutex
	// pins maps sandbox → address → name → entry. Guarded by mu. Empty inner
	// maps are deleted so that memory follows the live pin count.
	pins map[string]map[netip.Addr]map[string]entry
	// n is the number of entries in pins, live or not yet swept. Guarded by mu.
	n int
	// expiries holds a deadline for every entry in pins, plus stale ones for
	// entries since extended or dropped. Guarded by mu.
	expiries queue
	// seq numbers deadlines in the order they were scheduled. Guarded by mu.
	seq uint64
}

// entry is the current expiry of one pin and the seq of its live deadline.
type entry struct {
	expires time.Time
	seq     uint64
}

// New returns an empty Table configured by cfg.
func New(cfg Config) *Table {
	t := &Table{
		floor: cfg.Floor,
		max:   cfg.MaxEntries,
		now:   cfg.Now,
		pins:  make(map[string]map[netip.Addr]map[string]entry),
	}
	if t.floor <= 0 {
		t.floor = DefaultFloor
	}
	if t.max <= 0 {
		t.max = DefaultMaxEntries
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Add pins name to addr for sandbox until now plus the larger of ttl and the
// table's floor. The name is normalised and a v4-mapped v6 address is stored
// as v4. Adding an existing pin extends it; it never shortens it. An empty
// sandbox or name, or an invalid address, is ignored.
func (t *Table) Add(sandbox string, addr netip.Addr, name string, ttl time.Duration) {
	s, ok := makeSlot(sandbox, addr, name)
	if !ok {
		return
	}
	now := t.now()
	expires := now.Add(max(ttl, t.floor))

	t.mu.Lock()
	defer t.mu.Unlock()

	t.sweepLocked(now)
	if old, ok := t.lookupLocked(s); ok {
		if !expires.After(old.expires) {
			return
		}
		t.storeLocked(s, expires)
		t.compactLocked()
		return
	}

	for t.n >= t.max {
		if !t.evictLocked() {
			break
		}
	}
	t.storeLocked(s, expires)
	t.n++
}

// Check reports whether sandbox holds a live pin of name to addr. The name is
// normalised and a v4-mapped v6 address is compared as v4, as in Add.
func (t *Table) Check(sandbox string, addr netip.Addr, name string) bool {
	s, ok := makeSlot(sandbox, addr, name)
	if !ok {
		return false
	}
	now := t.now()

	t.mu.RLock()
	defer t.mu.RUnlock()

	e, ok := t.lookupLocked(s)
	return ok && now.Before(e.expires)
}

// Names returns, sorted, the names sandbox has live pins for at addr.
func (t *Table) Names(sandbox string, addr netip.Addr) []string {
	addr = addr.Unmap()
	now := t.now()

	t.mu.RLock()
	defer t.mu.RUnlock()

	var names []string
	for name, e := range t.pins[sandbox][addr] {
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

	for _, names := range t.pins[sandbox] {
		t.n -= len(names)
	}
	delete(t.pins, sandbox)
	t.compactLocked()
}

// Len returns the number of live pins.
func (t *Table) Len() int {
	now := t.now()

	t.mu.Lock()
	defer t.mu.Unlock()

	t.sweepLocked(now)
	return t.n
}

// makeSlot normalises the parts of a pin; ok is false if one is unusable.
func makeSlot(sandbox string, addr netip.Addr, name string) (s slot, ok bool) {
	name = domain.Normalize(name)
	if sandbox == "" || name == "" || !addr.IsValid() {
		return slot{}, false
	}
	return slot{sandbox: sandbox, addr: addr.Unmap(), name: name}, true
}

func (t *Table) lookupLocked(s slot) (entry, bool) {
	e, ok := t.pins[s.sandbox][s.addr][s.name]
	return e, ok
}

// storeLocked sets the expiry of s and schedules it. It does not count the
// entry; a caller storing a new pin increments n.
func (t *Table) storeLocked(s slot, expires time.Time) {
	t.seq++
	addrs := t.pins[s.sandbox]
	if addrs == nil {
		addrs = make(map[netip.Addr]map[string]entry)
		t.pins[s.sandbox] = addrs
	}
	names := addrs[s.addr]
	if names == nil {
		names = make(map[string]entry)
		addrs[s.addr] = names
	}
	names[s.name] = entry{expires: expires, seq: t.seq}
	t.expiries.push(deadline{slot: s, expires: expires, seq: t.seq})
}

// deleteLocked removes s from pins, pruning empty maps, and uncounts it.
func (t *Table) deleteLocked(s slot) {
	addrs := t.pins[s.sandbox]
	names := addrs[s.addr]
	delete(names, s.name)
	if len(names) == 0 {
		delete(addrs, s.addr)
	}
	if len(addrs) == 0 {
		delete(t.pins, s.sandbox)
	}
	t.n--
}

// currentLocked reports whether d is the live deadline of its pin rather
// than a stale one left by an extension or a drop.
func (t *Table) currentLocked(d deadline) bool {
	e, ok := t.lookupLocked(d.slot)
	return ok && e.seq == d.seq
}

// sweepLocked removes every pin that expired at or before now. It only
// looks at the head of the expiry queue, so its cost is proportional to the
// number of deadlines it removes.
func (t *Table) sweepLocked(now time.Time) {
	for {
		d, ok := t.expiries.peek()
		if !ok || now.Before(d.expires) {
			return
		}
		t.expiries.pop()
		if t.currentLocked(d) {
			t.deleteLocked(d.slot)
		}
	}
}

// evictLocked removes the pin that expires first and reports whether there
// was one to remove.
func (t *Table) evictLocked() bool {
	for t.expiries.Len() > 0 {
		d := t.expiries.pop()
		if t.currentLocked(d) {
			t.deleteLocked(d.slot)
			return true
		}
	}
	return false
}

// compactLocked drops stale deadlines once they outnumber live ones, so
// that repeated extensions and drops cannot grow the queue without bound.
func (t *Table) compactLocked() {
	if t.expiries.Len() <= 2*t.n+64 {
		return
	}
	t.expiries.filter(t.currentLocked)
}
