package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxUpstreamHosts bounds the transport cache.
const maxUpstreamHosts = 4096

// HTTP/2 receive windows towards upstreams. Go's defaults (4 MiB a stream,
// 1 GiB a connection) let a sandbox that opens many streams and never
// reads them make keygated buffer 4 MiB each from the upstream: 100 such
// streams took its RSS to 460 MiB in two seconds. These bound it to 4 MiB
// an upstream connection, and since connections are a sandbox's own (see
// upstreams), a sandbox that stalls its streams stalls only itself. 2 MiB
// a stream still carries 40 MB/s at 50 ms round trip.
const (
	upstreamStreamWindow = 2 << 20
	upstreamConnWindow   = 4<<20 - 1 // net/http takes less than 4 MiB
)

// upstreamKey names a transport: one per sandbox and upstream server name.
type upstreamKey struct{ sandbox, sni string }

// upstreams keeps one http.Transport per sandbox and upstream server name.
// The request URL carries the pinned address, so a transport's pool is
// keyed by (name, address): a connection verified for one name is never
// reused for another that happens to share an address. No connection is
// shared between sandboxes, so one cannot starve another's streams of flow
// control window, nor see a connection another set up.
type upstreams struct {
	roots *x509.CertPool

	mu    sync.Mutex
	byKey map[upstreamKey]*http.Transport // guarded by mu
}

func newUpstreams(roots *x509.CertPool) *upstreams {
	return &upstreams{roots: roots, byKey: make(map[upstreamKey]*http.Transport)}
}

// RoundTrip sends r over the transport for the sandbox and server name of
// r's connection.
func (u *upstreams) RoundTrip(r *http.Request) (*http.Response, error) {
	ci := infoFrom(r.Context())
	return u.transport(upstreamKey{ci.sb.ID(), ci.sni}).RoundTrip(r)
}

func (u *upstreams) transport(k upstreamKey) *http.Transport {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.byKey[k]; ok {
		return t
	}
	if len(u.byKey) >= maxUpstreamHosts {
		u.closeIdleLocked()
		clear(u.byKey)
	}
	sni := k.sni
	t := &http.Transport{
		Proxy:       nil, // never an environment proxy: the pinned address is the destination
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			ServerName: sni,
			RootCAs:    u.roots,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2: true,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     upstreamStreamWindow,
			MaxReceiveBufferPerConnection: upstreamConnWindow,
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	u.byKey[k] = t
	return t
}

// forget drops sandbox's transports and closes their idle connections;
// requests still on them finish.
func (u *upstreams) forget(sandbox string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for k, t := range u.byKey {
		if k.sandbox == sandbox {
			t.CloseIdleConnections()
			delete(u.byKey, k)
		}
	}
}

func (u *upstreams) closeIdle() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closeIdleLocked()
}

func (u *upstreams) closeIdleLocked() {
	for _, t := range u.byKey {
		t.CloseIdleConnections()
	}
}
