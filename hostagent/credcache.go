package hostagent

import (
	"sync"
	"time"

	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/vault"
)

// DefaultCredentialRefresh is how long a credential read from the store is
// served from memory when Config.CredentialRefresh is zero. Changes made
// through this agent's API take effect at once; the refresh bounds how long
// a change made elsewhere (another host sharing the store) takes to arrive.
const DefaultCredentialRefresh = 30 * time.Second

// freshness is implemented by stores that can lose touch with the source
// of truth (vault.Etcd).
type freshness interface{ Fresh() error }

// credKey names one credential.
type credKey struct{ vault, name string }

// cachedCred is a credential's metadata and current secret as last read.
// The secret is kept in the proxy's form, so that its redaction patterns
// are computed once per read from the store, not once per request.
type cachedCred struct {
	meta    vault.Credential
	secret  *proxy.Secret
	fetched time.Time
}

// credCache keeps decrypted credentials in the agent's memory so the proxy
// does not open the store and decrypt on every request.
//
// Rotation correctness: invalidate is called after a change is committed
// and before the API answers, so every request whose lookup starts after
// the answer misses the cache and reads the store. A lookup that read the
// store before the change and finishes after it must not put the stale
// value back; the generation counter, bumped by invalidate, makes such a
// lookup drop its result instead of caching it.
type credCache struct {
	store   vault.Store
	refresh time.Duration
	now     func() time.Time

	mu      sync.RWMutex
	gen     uint64                 // guarded by mu; bumped by invalidate
	entries map[credKey]cachedCred // guarded by mu
}

func newCredCache(store vault.Store, refresh time.Duration) *credCache {
	if refresh <= 0 {
		refresh = DefaultCredentialRefresh
	}
	return &credCache{
		store:   store,
		refresh: refresh,
		now:     time.Now,
		entries: make(map[credKey]cachedCred),
	}
}

// get returns a credential of a live vault with its current secret. Errors
// (archived vault, removed credential) are not cached: they are rare, and
// the store answers them without decrypting anything.
func (c *credCache) get(vaultName, name string) (vault.Credential, *proxy.Secret, error) {
	k := credKey{vaultName, name}
	if f, ok := c.store.(freshness); ok {
		// A fleet store cut off from its cluster for longer than its
		// grace fails closed; so must what was cached from it.
		if err := f.Fresh(); err != nil {
			return vault.Credential{}, nil, err
		}
	}
	c.mu.RLock()
	e, ok := c.entries[k]
	gen := c.gen
	c.mu.RUnlock()
	if ok && c.now().Sub(e.fetched) < c.refresh {
		return e.meta, e.secret, nil
	}

	secret, meta, err := c.store.Secret(vaultName, name)
	if err != nil {
		c.mu.Lock()
		delete(c.entries, k)
		c.mu.Unlock()
		return vault.Credential{}, nil, err
	}
	sec := proxy.NewSecret(secret)
	c.mu.Lock()
	if c.gen == gen {
		c.entries[k] = cachedCred{meta: meta, secret: sec, fetched: c.now()}
	}
	c.mu.Unlock()
	return meta, sec, nil
}

// invalidate forgets every cached credential. Changes are rare, so one
// generation for the whole cache is simpler than per-key bookkeeping and
// costs one store read per credential in use.
func (c *credCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
}
