package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// errNoH2 is the error of an HTTP/2 request to a server that did not
// negotiate HTTP/2.
var errNoH2 = errors.New("no HTTP/2: the server did not negotiate h2")

// headerFlags collects repeated -H "Name: value" flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// newConnClient is the new-connection-per-request load: every request
// gets its own TCP connection and a full TLS handshake (no session
// resumption), then the connection is closed. Neither h2load nor wrk can
// do that, over HTTP/2 in particular.
type newConnClient struct {
	url       *url.URL
	proto     string // "h1" or "h2"
	connectTo string // address to dial; "" = the URL's host and port
	header    http.Header
}

// runNewConn is `kgbench newconn`: -c workers each repeat connect, one
// request, close for -d, then one JSON summary line goes to stdout.
func runNewConn(args []string) error {
	fs := flag.NewFlagSet("newconn", flag.ExitOnError)
	proto := fs.String("proto", "h1", "h1 or h2")
	conns := fs.Int("c", 1, "concurrent connections")
	d := fs.Duration("d", 5*time.Second, "how long to run")
	rawURL := fs.String("url", "", "https URL to request")
	connectTo := fs.String("connect-to", "", "host:port to dial instead of the URL's")
	var headers headerFlags
	fs.Var(&headers, "H", "request header \"Name: value\" (repeatable)")
	fs.Parse(args)

	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "https" {
		return fmt.Errorf("--url %q: want an https URL", *rawURL)
	}
	c := &newConnClient{url: u, proto: *proto, connectTo: *connectTo, header: http.Header{}}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want Name: value", h)
		}
		c.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return json.NewEncoder(os.Stdout).Encode(c.run(*conns, *d))
}

// workerStats is one worker's tally.
type workerStats struct {
	times             []time.Duration
	ok, status4, errs int
	lastErr           error
}

func (c *newConnClient) run(workers int, d time.Duration) newConnSummary {
	deadline := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// A dial can fail on the deadline an instant before ctx reports it is
	// done; such failures are the end of the run, not errors.
	over := func() bool { return !time.Now().Before(deadline) }
	stats := make([]workerStats, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range stats {
		wg.Add(1)
		go func(st *workerStats) {
			defer wg.Done()
			for !over() {
				t0 := time.Now()
				code, err := c.once(ctx)
				switch {
				case err != nil && over():
					return // cut off by the deadline: not counted
				case err != nil:
					st.errs++
					st.lastErr = err
					continue
				case code/100 == 2:
					st.ok++
				case code/100 == 4:
					st.status4++
				}
				st.times = append(st.times, time.Since(t0))
			}
		}(&stats[i])
	}
	wg.Wait()

	sum := newConnSummary{Seconds: time.Since(start).Seconds()}
	var all []time.Duration
	for _, st := range stats {
		all = append(all, st.times...)
		sum.OK += st.ok
		sum.Status4 += st.status4
		sum.Errors += st.errs
		if st.lastErr != nil {
			sum.LastErr = st.lastErr.Error()
		}
	}
	sum.Requests = len(all)
	p50, p99 := percentiles(all)
	sum.P50, sum.P99 = p50.Microseconds(), p99.Microseconds()
	return sum
}

// once dials, handshakes, sends one GET and reads the whole answer, then
// closes the connection. It returns the status code.
func (c *newConnClient) once(ctx context.Context) (int, error) {
	addr := c.connectTo
	if addr == "" {
		addr = c.url.Host
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()

	alpn := map[string]string{"h1": "http/1.1", "h2": "h2"}[c.proto]
	conn := tls.Client(raw, &tls.Config{
		ServerName: c.url.Hostname(),
		NextProtos: []string{alpn},
		// Like h2load, the client does not verify: every row would need
		// its own roots, and verification is not what is measured.
		InsecureSkipVerify: true,
	})
	if err := conn.HandshakeContext(ctx); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url.String(), nil)
	if err != nil {
		return 0, err
	}
	req.Header = c.header.Clone()
	if c.proto == "h2" {
		return c.h2(conn, req)
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// h2 sends req on conn as the only stream of a new HTTP/2 connection.
func (c *newConnClient) h2(conn *tls.Conn, req *http.Request) (int, error) {
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		return 0, errNoH2
	}
	cc, err := (&http2.Transport{}).NewClientConn(conn)
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
