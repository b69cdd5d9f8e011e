package hostagent

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/pkg/vault"
)

// fakeStore serves Secret from a map; the embedded nil Store makes every
// other method panic, which no test here calls.
type fakeStore struct {
	vault.Store
	mu      sync.Mutex
	secrets map[string]string
	reads   int
	// during, if set, runs inside Secret after the value is read: it
	// simulates a change landing while a lookup is in flight.
	during func()
}

func (f *fakeStore) Secret(v, name string) (vault.Secret, vault.Credential, error) {
	f.mu.Lock()
	f.reads++
	val, ok := f.secrets[v+"/"+name]
	during := f.during
	f.during = nil
	f.mu.Unlock()
	if !ok {
		return vault.Secret{}, vault.Credential{}, vault.ErrNotFound
	}
	if during != nil {
		during()
	}
	return vault.NewSecret([]byte(val)), vault.Credential{Vault: v, Name: name}, nil
}

func (f *fakeStore) set(key, val string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[key] = val
}

func secretOf(t *testing.T, c *credCache) string {
	t.Helper()
	_, s, err := c.get("v", "c")
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Bytes())
}

func TestCredCacheServesFromMemory(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	c := newCredCache(st, time.Minute, 0)
	for range 3 {
		if got := secretOf(t, c); got != "old" {
			t.Fatalf("got %q", got)
		}
	}
	if st.reads != 1 {
		t.Errorf("store read %d times, want 1", st.reads)
	}
}

func TestCredCacheInvalidate(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	c := newCredCache(st, time.Minute, 0)
	secretOf(t, c)
	st.set("v/c", "new")
	c.invalidate()
	if got := secretOf(t, c); got != "new" {
		t.Fatalf("after invalidate got %q, want new", got)
	}
}

func TestCredCacheRefreshes(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	c, now := clocked(st, 30*time.Second, 0)
	secretOf(t, c)
	st.set("v/c", "changed elsewhere")
	if got := secretOf(t, c); got != "old" {
		t.Fatalf("within refresh got %q, want the cached value", got)
	}
	*now = now.Add(31 * time.Second)
	if got := secretOf(t, c); got != "changed elsewhere" {
		t.Fatalf("after refresh got %q", got)
	}
}

// A lookup that read the old value before a rotation must not put it back
// in the cache after the rotation invalidated it.
func TestCredCacheStaleLookupNotCached(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	c := newCredCache(st, time.Minute, 0)
	st.during = func() {
		st.set("v/c", "new")
		c.invalidate()
	}
	if got := secretOf(t, c); got != "old" {
		t.Fatalf("in-flight lookup got %q, want old", got)
	}
	if got := secretOf(t, c); got != "new" {
		t.Fatalf("lookup after rotation got %q, want new", got)
	}
}

func TestCredCacheErrorsNotCached(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{}}
	c := newCredCache(st, time.Minute, 0)
	if _, _, err := c.get("v", "c"); err == nil {
		t.Fatal("want an error for a missing credential")
	}
	st.set("v/c", "added")
	if got := secretOf(t, c); got != "added" {
		t.Fatalf("got %q", got)
	}
}

// clocked returns a cache over st whose clock reads *now, for the test to
// move.
func clocked(st *fakeStore, refresh, retain time.Duration) (*credCache, *time.Time) {
	now := time.Now()
	c := newCredCache(st, refresh, retain)
	c.now = func() time.Time { return now }
	return c, &now
}

// held returns how many credentials c holds a current or a retired secret
// of.
func held(c *credCache) (current, retired int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries), len(c.retired)
}

func retiredOf(c *credCache) []string {
	var out []string
	for _, s := range c.retiredSecrets("v", "c") {
		out = append(out, string(s.Bytes()))
	}
	return out
}

// A rotation made through the agent (invalidate) keeps the secret it
// replaced for redaction, for the retention counted from the rotation,
// however late the next read comes.
func TestCredCacheRetiresRotatedSecret(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "one"}}
	c, now := clocked(st, time.Minute, time.Hour)
	secretOf(t, c)
	if r := retiredOf(c); r != nil {
		t.Fatalf("retired %q before any rotation", r)
	}
	st.set("v/c", "two")
	c.invalidate()
	*now = now.Add(10 * time.Minute) // the next use comes later
	if got := secretOf(t, c); got != "two" {
		t.Fatalf("got %q after rotation", got)
	}
	if r := retiredOf(c); !slices.Equal(r, []string{"one"}) {
		t.Fatalf("retired %q, want [one]", r)
	}
	*now = now.Add(50 * time.Minute) // an hour after the rotation
	if r := retiredOf(c); r != nil {
		t.Fatalf("retired %q past the retention", r)
	}
	// The next change lets go of it in memory as well.
	c.invalidate()
	if _, n := held(c); n != 0 {
		t.Fatalf("%d expired secrets still held after a change", n)
	}
}

// A change another host made, found when the refresh reads the store,
// retires the old secret as well; rotations faster than the retention keep
// the newest maxRetired.
func TestCredCacheRetiresOnRefreshAndBounds(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "s0"}}
	c, now := clocked(st, time.Second, time.Hour)
	secretOf(t, c)
	var want []string
	for i := 1; i <= maxRetired+2; i++ {
		st.set("v/c", fmt.Sprintf("s%d", i))
		*now = now.Add(2 * time.Second)
		secretOf(t, c)
		want = append(want, fmt.Sprintf("s%d", i-1))
	}
	want = want[len(want)-maxRetired:]
	if r := retiredOf(c); !slices.Equal(r, want) {
		t.Fatalf("retired %q, want %q", r, want)
	}
	// An unchanged secret read again is not retired.
	*now = now.Add(2 * time.Second)
	secretOf(t, c)
	if r := retiredOf(c); !slices.Equal(r, want) {
		t.Fatalf("retired %q after a read with no change, want %q", r, want)
	}
}

// Archive and removal drop the cached and the retired secrets at once; a
// read that finds the credential gone drops them too.
func TestCredCacheForget(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "one", "w/c": "other"}}
	c := newCredCache(st, time.Minute, time.Hour)
	secretOf(t, c)
	if _, _, err := c.get("w", "c"); err != nil {
		t.Fatal(err)
	}
	st.set("v/c", "two")
	c.invalidate()
	secretOf(t, c)
	if len(retiredOf(c)) != 1 {
		t.Fatal("nothing retired")
	}
	c.forget("v", "")
	if r := retiredOf(c); r != nil {
		t.Fatalf("retired %q after the vault was forgotten", r)
	}
	c.mu.RLock()
	_, cachedV := c.entries[credKey{"v", "c"}]
	_, cachedW := c.entries[credKey{"w", "c"}]
	c.mu.RUnlock()
	if cachedV || !cachedW {
		t.Fatalf("after forget(v): v cached %v (want false), w cached %v (want true)", cachedV, cachedW)
	}

	st.set("v/c", "three")
	secretOf(t, c)
	st.set("v/c", "four")
	c.invalidate()
	secretOf(t, c)
	st.mu.Lock()
	delete(st.secrets, "v/c") // removed elsewhere
	st.mu.Unlock()
	c.invalidate()
	if _, _, err := c.get("v", "c"); err == nil {
		t.Fatal("want an error for a removed credential")
	}
	if r := retiredOf(c); r != nil {
		t.Fatalf("retired %q after the credential was found removed", r)
	}
}

// A negative retention keeps nothing replaced, and an entry left stale
// past the retention is dropped with its secret.
func TestCredCacheNoRetention(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "one"}}
	c := newCredCache(st, time.Minute, -1)
	secretOf(t, c)
	st.set("v/c", "two")
	c.invalidate()
	secretOf(t, c)
	if r := retiredOf(c); r != nil {
		t.Fatalf("retired %q with retention off", r)
	}

	c, now := clocked(st, time.Minute, time.Hour)
	secretOf(t, c)
	c.invalidate()
	*now = now.Add(2 * time.Hour)
	c.invalidate()
	if n, _ := held(c); n != 0 {
		t.Fatalf("%d entries kept stale past the retention", n)
	}
}

// A secret read just before a rotation landed is sent by its request, so
// it is kept for redaction although it is never cached; one read just
// before a removal is kept nowhere.
func TestCredCacheInFlightChanges(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "one"}}
	c := newCredCache(st, time.Minute, time.Hour)
	secretOf(t, c)
	st.set("v/c", "two")
	c.invalidate()
	st.during = func() { // a second rotation while "two" is in flight
		st.set("v/c", "three")
		c.invalidate()
	}
	if got := secretOf(t, c); got != "two" {
		t.Fatalf("in-flight lookup got %q", got)
	}
	if got := secretOf(t, c); got != "three" {
		t.Fatalf("got %q after the second rotation", got)
	}
	if r := retiredOf(c); !slices.Equal(r, []string{"two", "one"}) {
		t.Fatalf("retired %q, want [two one]", r)
	}

	st.during = func() { c.forget("v", "c") } // removed while in flight
	st.set("v/c", "four")
	c.invalidate()
	if got := secretOf(t, c); got != "four" {
		t.Fatalf("in-flight lookup got %q", got)
	}
	if cur, ret := held(c); cur != 0 || ret != 0 {
		t.Fatalf("after a removal in flight: %d cached, %d with retired secrets", cur, ret)
	}
}
