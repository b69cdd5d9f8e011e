package hostagent

import (
	"errors"
	"maps"
	"slices"
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

// DefaultRetiredRedaction is how long a secret replaced by a rotation is
// still searched for in answers (never sent) when Config.RetiredRedaction
// is zero: an upstream that saw the old key before the rotation (a debug
// endpoint replaying requests, an error quoting the last key) must not
// hand it to the sandbox afterwards.
const DefaultRetiredRedaction = 24 * time.Hour

// maxRetired bounds the replaced secrets kept per credential; the oldest
// go first when rotations come faster than the retention.
const maxRetired = 4

// freshness is implemented by stores that can lose touch with the source
// of truth (vault.Etcd).
type freshness interface{ Fresh() error }

// credKey names one credential.
type credKey struct{ vault, name string }

// retiredSecret is a secret a credential had before a rotation, kept for
// redaction only, until it expires.
type retiredSecret struct {
	secret  *proxy.Secret
	expires time.Time
}

// cachedCred is a credential's metadata and current secret as last read.
// The secret is kept in the proxy's form, so that its redaction patterns
// are computed once per read from the store, not once per request.
type cachedCred struct {
	meta    vault.Credential
	secret  *proxy.Secret
	fetched time.Time
	// stale is when invalidate marked the entry to be read again; zero
	// while it is fresh.
	stale time.Time
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
//
// Retired secrets: invalidate marks entries stale instead of dropping them,
// so that the read which follows a rotation can see the secret it replaces
// and keep it, for redaction only, for the retention. Archive and removal
// drop a credential's secrets, current and retired, at once (forget).
type credCache struct {
	store   vault.Store
	refresh time.Duration
	retain  time.Duration // how long a replaced secret is kept; < 0 = not at all
	now     func() time.Time

	mu      sync.RWMutex
	gen     uint64                      // guarded by mu; bumped by invalidate and forget
	purges  uint64                      // guarded by mu; bumped by forget
	entries map[credKey]cachedCred      // guarded by mu
	retired map[credKey][]retiredSecret // guarded by mu; oldest first
}

// newCredCache returns a cache over store. refresh 0 means
// DefaultCredentialRefresh; retain 0 means DefaultRetiredRedaction and a
// negative retain keeps no replaced secret.
func newCredCache(store vault.Store, refresh, retain time.Duration) *credCache {
	if refresh <= 0 {
		refresh = DefaultCredentialRefresh
	}
	if retain == 0 {
		retain = DefaultRetiredRedaction
	}
	return &credCache{
		store:   store,
		refresh: refresh,
		retain:  retain,
		now:     time.Now,
		entries: make(map[credKey]cachedCred),
		retired: make(map[credKey][]retiredSecret),
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
	gen, purges := c.gen, c.purges
	c.mu.RUnlock()
	if ok && e.stale.IsZero() && c.now().Sub(e.fetched) < c.refresh {
		return e.meta, e.secret, nil
	}

	secret, meta, err := c.store.Secret(vaultName, name)
	if err != nil {
		c.mu.Lock()
		delete(c.entries, k)
		if errors.Is(err, vault.ErrArchived) || errors.Is(err, vault.ErrNotFound) {
			delete(c.retired, k) // purged: nothing of it stays here either
		}
		c.mu.Unlock()
		return vault.Credential{}, nil, err
	}
	sec := proxy.NewSecret(secret)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prune()
	old, had := c.entries[k]
	switch {
	case c.purges != purges:
		// A removal or archive landed meanwhile: nothing of it is kept.
	case c.gen != gen:
		// Another change landed meanwhile, maybe a rotation of this
		// credential: sec is not cached, but the caller sends it, so
		// it is kept for redaction unless it is what the entry holds.
		if !had || !old.secret.Same(sec) {
			c.retire(k, sec, c.now())
		}
	default:
		if had && !old.secret.Same(sec) {
			// Replaced: by a change this agent was told of (the entry
			// went stale then), or one another host made, found now.
			since := old.stale
			if since.IsZero() {
				since = c.now()
			}
			c.retire(k, old.secret, since)
		}
		c.entries[k] = cachedCred{meta: meta, secret: sec, fetched: c.now()}
	}
	return meta, sec, nil
}

// retire keeps s, the secret k had until since, for redaction until the
// retention after since. c.mu is held.
func (c *credCache) retire(k credKey, s *proxy.Secret, since time.Time) {
	if c.pastRetention(since, c.now()) {
		return
	}
	rs := append(c.retired[k], retiredSecret{secret: s, expires: since.Add(c.retain)})
	if len(rs) > maxRetired {
		rs = slices.Delete(rs, 0, len(rs)-maxRetired)
	}
	c.retired[k] = rs
}

// pastRetention reports whether a secret replaced at since is no longer
// kept at now.
func (c *credCache) pastRetention(since, now time.Time) bool {
	return c.retain < 0 || !now.Before(since.Add(c.retain))
}

// prune drops the retired secrets that have expired. c.mu is held.
func (c *credCache) prune() {
	now := c.now()
	for k, rs := range c.retired {
		rs = slices.DeleteFunc(rs, func(r retiredSecret) bool { return !now.Before(r.expires) })
		if len(rs) == 0 {
			delete(c.retired, k)
		} else {
			c.retired[k] = rs
		}
	}
}

// retiredSecrets returns the secrets a credential had before its latest
// rotations, within the retention, for redaction only: the proxy never
// sends them. It is called for every request, so it only reads; expired
// secrets are dropped by the next read from the store or change.
func (c *credCache) retiredSecrets(vaultName, name string) []*proxy.Secret {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rs := c.retired[credKey{vaultName, name}]
	if len(rs) == 0 {
		return nil
	}
	now := c.now()
	var out []*proxy.Secret
	for _, r := range rs {
		if now.Before(r.expires) {
			out = append(out, r.secret)
		}
	}
	return out
}

// invalidate makes every cached credential be read from the store again
// on its next use. Changes are rare, so one generation for the whole cache
// is simpler than per-key bookkeeping and costs one store read per
// credential in use. The entries stay, marked stale, so that the next read
// can tell a rotated secret and retire it; one stale for longer than the
// retention is dropped, its secret past keeping.
func (c *credCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.prune()
	now := c.now()
	for k, e := range c.entries {
		switch {
		case e.stale.IsZero():
			e.stale = now
			c.entries[k] = e
		case c.pastRetention(e.stale, now):
			delete(c.entries, k)
		}
	}
}

// forget drops everything held of a credential, or of every credential of
// the vault when name is "": its cached and its retired secrets. Archive
// and removal call it, so that a purged secret does not stay in memory.
func (c *credCache) forget(vaultName, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.purges++
	match := func(k credKey) bool { return k.vault == vaultName && (name == "" || k.name == name) }
	maps.DeleteFunc(c.entries, func(k credKey, _ cachedCred) bool { return match(k) })
	maps.DeleteFunc(c.retired, func(k credKey, _ []retiredSecret) bool { return match(k) })
}
