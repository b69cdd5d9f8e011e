package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxUpstreamHosts bounds the per-host transport cache.
const maxUpstreamHosts = 4096

// upstreams keeps one http.Transport per upstream server name. The request
// URL carries the pinned address, so a transport's pool is keyed by
// (name, address): a connection verified for one name is never reused for
// another that happens to share an address.
type upstreams struct {
	roots *x509.CertPool

	mu    sync.Mutex
	bySNI map[string]*http.Transport // guarded by mu
}

func newUpstreams(roots *x509.CertPool) *upstreams {
	return &upstreams{roots: roots, bySNI: make(map[string]*http.Transport)}
}

// RoundTrip sends r over the transport for the server name of r's
// connection.
func (u *upstreams) RoundTrip(r *http.Request) (*http.Response, error) {
	return u.transport(infoFrom(r.Context()).sni).RoundTrip(r)
}

func (u *upstreams) transport(sni string) *http.Transport {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.bySNI[sni]; ok {
		return t
	}
	if len(u.bySNI) >= maxUpstreamHosts {
		u.closeIdleLocked()
		clear(u.bySNI)
	}
	t := &http.Transport{
		Proxy:       nil, // never an environment proxy: the pinned address is the destination
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			ServerName: sni,
			RootCAs:    u.roots,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	u.bySNI[sni] = t
	return t
}

func (u *upstreams) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closeIdleLocked()
}

func (u *upstreams) closeIdleLocked() {
	for _, t := range u.bySNI {
		t.CloseIdleConnections()
	}
}
