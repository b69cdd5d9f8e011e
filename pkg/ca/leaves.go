package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero LeafConfig.
const (
	defaultMaxEntries = 1024
	defaultValidity   = 7 * 24 * time.Hour
)

// LeafConfig configures a Leaves cache. The zero value is ready to use.
type LeafConfig struct {
	// MaxEntries bounds the cache; past it the least recently used leaf is
	// dropped. Zero or negative means 1024.
	MaxEntries int

	// Validity is how long a leaf is valid from its issuance. NotBefore is
	// additionally backdated one hour for clock skew. Zero or negative means
	// 7 days.
	Validity time.Duration

	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns cfg with every unset field given its default.
func (cfg LeafConfig) withDefaults() LeafConfig {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = defaultMaxEntries
	}
	if cfg.Validity <= 0 {
		cfg.Validity = defaultValidity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// Leaves issues leaf certificates signed by a CA and caches them by host.
// It is safe for concurrent use.
//
// All leaves of one Leaves share a single ECDSA P-256 key pair, generated on
// first use, so that issuing a leaf costs one signature rather than a key
// generation. The key never leaves the process.
type Leaves struct {
	ca  *CA
	cfg LeafConfig
	key func() (*ecdsa.PrivateKey, error) // generates the shared key once

	mu       sync.Mutex
	cache    *lru                 // guarded by mu
	inflight map[string]*issuance // by host; guarded by mu

	hits, misses atomic.Uint64
}

// issuance is one leaf being issued; Gets for the same host wait on it.
type issuance struct {
	done chan struct{} // closed once cert and err are set
	cert *tls.Certificate
	err  error
}

// NewLeaves returns an empty leaf cache issuing from c.
func (c *CA) NewLeaves(cfg LeafConfig) *Leaves {
	cfg = cfg.withDefaults()
	return &Leaves{
		ca:  c,
		cfg: cfg,
		key: sync.OnceValues(func() (*ecdsa.PrivateKey, error) {
			return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}),
		cache:    newLRU(cfg.MaxEntries),
		inflight: make(map[string]*issuance),
	}
}

// Get returns a certificate for host, issuing one if none is cached or the
// cached one has less than a third of its validity left. host is a DNS name
// or an IP literal, which gets an IP SAN; it is lowercased and one trailing
// dot is stripped, and the leaf's only SAN is the result. Empty hosts,
// wildcards, whitespace and names pkg/domain rejects are refused with an
// error wrapping ErrInvalidHost.
//
// The returned certificate's chain is [leaf, CA] and its Leaf field is set.
// It is shared between callers and must not be modified. Concurrent Gets for
// the same missing host wait for a single issuance; a failed issuance is not
// cached, so the next Get tries again.
func (l *Leaves) Get(host string) (*tls.Certificate, error) {
	name, err := parseHost(host)
	if err != nil {
		return nil, err
	}

	l.mu.Lock()
	if e := l.cache.get(name.key); e != nil && !l.cfg.Now().After(e.renewAt) {
		l.mu.Unlock()
		l.hits.Add(1)
		return e.cert, nil
	}
	l.misses.Add(1)
	call, ok := l.inflight[name.key]
	if !ok {
		call = &issuance{done: make(chan struct{})}
		l.inflight[name.key] = call
	}
	l.mu.Unlock()

	if ok {
		<-call.done
	} else {
		l.complete(name, call)
	}
	return call.cert, call.err
}

// Stats returns how many Gets were answered from the cache (hits) and how
// many issued a leaf or waited for another Get's issuance (misses).
func (l *Leaves) Stats() (hits, misses uint64) {
	return l.hits.Load(), l.misses.Load()
}

// complete issues the leaf for call, caches it and wakes the Gets waiting on
// call. Issuing outside mu keeps Gets for other hosts from queueing behind a
// signature.
func (l *Leaves) complete(name leafName, call *issuance) {
	now := l.cfg.Now()
	call.cert, call.err = l.issue(name, now)

	l.mu.Lock()
	delete(l.inflight, name.key)
	if call.err == nil {
		renewAt := now.Add(l.cfg.Validity - l.cfg.Validity/3)
		l.cache.put(&cacheEntry{key: name.key, cert: call.cert, renewAt: renewAt})
	}
	l.mu.Unlock()

	close(call.done)
}

// issue signs a new leaf for name, valid from now.
func (l *Leaves) issue(name leafName, now time.Time) (*tls.Certificate, error) {
	key, err := l.key()
	if err != nil {
		return nil, fmt.Errorf("generating leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}

	// The subject stays empty: the SAN carries the name, and CreateCertificate
	// marks the SAN extension critical as RFC 5280 requires in that case.
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(l.cfg.Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if name.ip != nil {
		tmpl.IPAddresses = []net.IP{name.ip}
	} else {
		tmpl.DNSNames = []string{name.key}
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.ca.cert, key.Public(), l.ca.key)
	if err != nil {
		return nil, fmt.Errorf("issuing leaf for %s: %w", name.key, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing leaf for %s: %w", name.key, err)
	}

	return &tls.Certificate{
		Certificate: [][]byte{der, l.ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}
