package hostagent

import (
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
	c := newCredCache(st, time.Minute)
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
	c := newCredCache(st, time.Minute)
	secretOf(t, c)
	st.set("v/c", "new")
	c.invalidate()
	if got := secretOf(t, c); got != "new" {
		t.Fatalf("after invalidate got %q, want new", got)
	}
}

func TestCredCacheRefreshes(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	now := time.Now()
	c := newCredCache(st, 30*time.Second)
	c.now = func() time.Time { return now }
	secretOf(t, c)
	st.set("v/c", "changed elsewhere")
	if got := secretOf(t, c); got != "old" {
		t.Fatalf("within refresh got %q, want the cached value", got)
	}
	now = now.Add(31 * time.Second)
	if got := secretOf(t, c); got != "changed elsewhere" {
		t.Fatalf("after refresh got %q", got)
	}
}

// A lookup that read the old value before a rotation must not put it back
// in the cache after the rotation invalidated it.
func TestCredCacheStaleLookupNotCached(t *testing.T) {
	st := &fakeStore{secrets: map[string]string{"v/c": "old"}}
	c := newCredCache(st, time.Minute)
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
	c := newCredCache(st, time.Minute)
	if _, _, err := c.get("v", "c"); err == nil {
		t.Fatal("want an error for a missing credential")
	}
	st.set("v/c", "added")
	if got := secretOf(t, c); got != "added" {
		t.Fatalf("got %q", got)
	}
}
