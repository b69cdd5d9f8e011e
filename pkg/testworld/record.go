package testworld

import (
	"bytes"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Request is one HTTP request a world server received.
type Request struct {
	Host    string // Host header (:authority in HTTP/2) as sent
	SNI     string // TLS server name, or "" for plain HTTP or a client that sent none
	TLS     bool   // whether the request came over TLS
	Method  string
	Path    string      // request target: path and query, as sent
	Header  http.Header // every header as received
	Trailer http.Header // trailers, or nil
	Body    []byte      // at most maxBody bytes; the rest is read and dropped
	Proto   string      // "HTTP/1.1" or "HTTP/2.0"
	Src     netip.AddrPort
	Dst     netip.AddrPort // the world address and port that received it
	Time    time.Time      // when the request was recorded
}

// clone returns a deep copy, so callers can keep or change what they get
// without racing the recorder.
func (r Request) clone() Request {
	r.Header = r.Header.Clone()
	r.Trailer = r.Trailer.Clone()
	r.Body = bytes.Clone(r.Body)
	return r
}

// contains reports whether b appears in any recorded part of r.
func (r Request) contains(b []byte) bool {
	for _, s := range []string{r.Host, r.SNI, r.Method, r.Path} {
		if bytes.Contains([]byte(s), b) {
			return true
		}
	}
	return headerContains(r.Header, b) || headerContains(r.Trailer, b) ||
		bytes.Contains(r.Body, b)
}

// headerContains reports whether b appears in a name or value of h. Names are
// searched too: a secret smuggled as a header name is still a leak.
func headerContains(h http.Header, b []byte) bool {
	for k, vs := range h {
		if bytes.Contains([]byte(k), b) {
			return true
		}
		for _, v := range vs {
			if bytes.Contains([]byte(v), b) {
				return true
			}
		}
	}
	return false
}

// Datagram is a UDP payload a sink received, or the bytes of one connection
// to a raw TCP sink. The sinks are the attacker's and the stray DNS server's.
type Datagram struct {
	Network string         // "udp" or "tcp"
	Dst     netip.AddrPort // the sink's address
	Src     netip.AddrPort // the sender
	Payload []byte         // for TCP, at most maxBody bytes of the stream so far
}

// DNSQuery is one question the world's DNS server received.
type DNSQuery struct {
	Name string // as asked, case kept, without the trailing dot
	Type string // "A", "AAAA", "TXT", ...
	Src  netip.AddrPort
}

// recorder keeps everything the world received.
type recorder struct {
	onRequest func(string, Request) // or nil

	mu sync.Mutex
	// mu guards the fields below.
	requests  map[string][]Request // by world host name
	datagrams []Datagram
	queries   []DNSQuery
}

func newRecorder(onRequest func(string, Request)) *recorder {
	return &recorder{onRequest: onRequest, requests: make(map[string][]Request)}
}

// addRequest files req under server and then, outside the lock so that a slow
// callback cannot stall other servers, tells onRequest.
func (r *recorder) addRequest(server string, req Request) {
	r.mu.Lock()
	r.requests[server] = append(r.requests[server], req)
	r.mu.Unlock()

	if r.onRequest != nil {
		r.onRequest(server, req.clone())
	}
}

func (r *recorder) addDatagram(d Datagram) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.datagrams = append(r.datagrams, d)
}

// addStream records a new TCP connection and returns its index, which
// appendStream takes.
func (r *recorder) addStream(d Datagram) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.datagrams = append(r.datagrams, d)
	return len(r.datagrams) - 1
}

// appendStream adds b to the payload of stream i, up to maxBody bytes.
func (r *recorder) appendStream(i int, b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.datagrams[i]
	if room := maxBody - len(d.Payload); len(b) > room {
		b = b[:max(room, 0)]
	}
	d.Payload = append(d.Payload, b...)
}

func (r *recorder) addQuery(q DNSQuery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries = append(r.queries, q)
}

func (r *recorder) requestsFor(server string) []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, 0, len(r.requests[server]))
	for _, req := range r.requests[server] {
		out = append(out, req.clone())
	}
	return out
}

func (r *recorder) datagramsCopy() []Datagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.datagrams)
	for i := range out {
		out[i].Payload = bytes.Clone(out[i].Payload)
	}
	return out
}

func (r *recorder) queriesCopy() []DNSQuery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.queries)
}

// contains implements World.Received.
func (r *recorder) contains(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	for _, reqs := range r.requests {
		for _, req := range reqs {
			if req.contains(b) {
				return true
			}
		}
	}
	for _, d := range r.datagrams {
		if bytes.Contains(d.Payload, b) {
			return true
		}
	}
	lower := bytes.ToLower(b)
	for _, q := range r.queries {
		if bytes.Contains(bytes.ToLower([]byte(q.Name)), lower) {
			return true
		}
	}
	return false
}
