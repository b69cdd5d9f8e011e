package vault

import (
	"sync"
)

// ChangeKind says what a Change did.
type ChangeKind string

// Kinds of change a Store reports to its watchers.
const (
	ChangeCreate  ChangeKind = "create"  // a vault was created
	ChangeArchive ChangeKind = "archive" // a vault was archived; every secret of it is gone
	ChangeAdd     ChangeKind = "add"     // a credential was added
	ChangeRotate  ChangeKind = "rotate"  // a credential's secret was replaced
	ChangeRemove  ChangeKind = "remove"  // a credential was removed
)

// Change is one committed change to a store, as reported to the functions
// registered with Store.Watch. It names what changed, never a value.
type Change struct {
	Kind       ChangeKind
	Vault      string
	Credential string // "" for ChangeCreate and ChangeArchive
	// Revision orders changes: a later change has a higher revision. For
	// Etcd it is the etcd revision that committed the change, the same on
	// every host; for Bolt it counts the changes since the store was opened.
	Revision int64
}

// watchers is the set of functions registered with Watch, shared by the
// engines. Calls are made in the order changes are reported, from one
// goroutine at a time.
type watchers struct {
	mu   sync.Mutex // guards next and fns
	next int
	fns  map[int]func(Change)

	// callMu serialises notify, so every watcher sees changes in order
	// even when two writers report them at once.
	callMu sync.Mutex
}

// add registers fn and returns the function that removes it.
func (w *watchers) add(fn func(Change)) (cancel func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = make(map[int]func(Change))
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.fns, id)
	}
}

// notify calls every registered function with each change, in order. It
// holds no lock a watcher could need, so a watcher may read the store.
func (w *watchers) notify(changes ...Change) {
	if len(changes) == 0 {
		return
	}
	w.callMu.Lock()
	defer w.callMu.Unlock()

	w.mu.Lock()
	fns := make([]func(Change), 0, len(w.fns))
	for _, fn := range w.fns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()

	for _, c := range changes {
		for _, fn := range fns {
			fn(c)
		}
	}
}
