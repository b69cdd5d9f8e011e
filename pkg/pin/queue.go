package pin

import (
	"container/heap"
	"net/netip"
	"time"
)

// key names one pin within its sandbox: a name under an address.
type key struct {
	addr netip.Addr
	name string
}

// deadline is one scheduled expiry in a queue. A pin that is extended gets a
// new deadline with a higher seq; the old one stays in the queue until it is
// popped or compacted away, and is recognised as stale because its seq no
// longer matches the pin's.
type deadline struct {
	key
	expires time.Time
	seq     uint64
}

// queue is a min-heap of deadlines ordered by expiry, then by seq, so the
// head is always the pin that expires first and, among equals, the one added
// first. It implements heap.Interface; use push and pop, not its methods.
type queue []deadline

func (q queue) Len() int { return len(q) }

func (q queue) Less(i, j int) bool {
	if !q[i].expires.Equal(q[j].expires) {
		return q[i].expires.Before(q[j].expires)
	}
	return q[i].seq < q[j].seq
}

func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }

// Push and Pop are for container/heap only.
func (q *queue) Push(x any) { *q = append(*q, x.(deadline)) }

func (q *queue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = deadline{} // let the key's name be collected
	*q = old[:len(old)-1]
	return d
}

func (q *queue) push(d deadline) { heap.Push(q, d) }

func (q *queue) pop() deadline { return heap.Pop(q).(deadline) }

// peek returns the head of the queue; ok is false when it is empty.
func (q queue) peek() (d deadline, ok bool) {
	if len(q) == 0 {
		return deadline{}, false
	}
	return q[0], true
}

// filter keeps only the deadlines for which keep returns true and restores
// the heap order.
func (q *queue) filter(keep func(deadline) bool) {
	kept := (*q)[:0]
	for _, d := range *q {
		if keep(d) {
			kept = append(kept, d)
		}
	}
	clear((*q)[len(kept):])
	*q = kept
	heap.Init(q)
}
