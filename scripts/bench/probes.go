package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The probes below run inside sandboxes (and, for comparison, on the
// host). Each prints one JSON line on stdout.

// connLatency is what `kgbench connlat` prints.
type connLatency struct {
	N          int   `json:"n"`
	Errors     int   `json:"errors"`
	ConnectP50 int64 `json:"connect_p50_us"`
	ConnectP99 int64 `json:"connect_p99_us"`
	TLSP50     int64 `json:"tls_p50_us"` // connect and TLS handshake: the first bytes back
	TLSP99     int64 `json:"tls_p99_us"`
}

// runConnLat times -n sequential connects to --addr, and each connect
// followed by a TLS handshake (whose end is the first byte back from the
// far side). The name is resolved once first: inside a sandbox that
// lookup is what lets the proxy accept the connection.
func runConnLat(args []string) error {
	fs := flag.NewFlagSet("connlat", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port to connect to")
	n := fs.Int("n", 500, "connections")
	fs.Parse(args)

	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	ips, err := net.DefaultResolver.LookupHost(context.Background(), host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	dst := net.JoinHostPort(ips[0], port)
	var connects, handshakes []time.Duration
	out := connLatency{N: *n}
	for range *n {
		t0 := time.Now()
		c, err := net.DialTimeout("tcp", dst, 5*time.Second)
		if err != nil {
			out.Errors++
			continue
		}
		t1 := time.Now()
		tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		err = tc.Handshake()
		t2 := time.Now()
		c.Close()
		if err != nil {
			out.Errors++
			continue
		}
		connects = append(connects, t1.Sub(t0))
		handshakes = append(handshakes, t2.Sub(t0))
	}
	p50, p99 := percentiles(connects)
	out.ConnectP50, out.ConnectP99 = p50.Microseconds(), p99.Microseconds()
	p50, p99 = percentiles(handshakes)
	out.TLSP50, out.TLSP99 = p50.Microseconds(), p99.Microseconds()
	return json.NewEncoder(os.Stdout).Encode(out)
}

// dnsLoad is what `kgbench dnsload` prints.
type dnsLoad struct {
	Seconds  float64 `json:"seconds"`
	Answered int64   `json:"answered"` // NOERROR answers with at least one record
	Other    int64   `json:"other"`    // any other answer
	Timeouts int64   `json:"timeouts"`
	QPS      float64 `json:"qps"`
}

// runDNSLoad sends A queries for --name to --server from -c workers, each
// with its own UDP socket and one query in flight, for -d.
func runDNSLoad(args []string) error {
	fs := flag.NewFlagSet("dnsload", flag.ExitOnError)
	server := fs.String("server", "", "DNS server host:port")
	name := fs.String("name", "", "name to ask for")
	workers := fs.Int("c", 16, "concurrent queries")
	d := fs.Duration("d", 3*time.Second, "how long to run")
	fs.Parse(args)

	var out dnsLoad
	deadline := time.Now().Add(*d)
	start := time.Now()
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dnsWorker(*server, dns.Fqdn(*name), deadline, &out)
		}()
	}
	wg.Wait()
	out.Seconds = time.Since(start).Seconds()
	out.QPS = float64(out.Answered) / out.Seconds
	return json.NewEncoder(os.Stdout).Encode(out)
}

func dnsWorker(server, name string, deadline time.Time, out *dnsLoad) {
	c, err := net.Dial("udp", server)
	if err != nil {
		atomic.AddInt64(&out.Timeouts, 1)
		return
	}
	conn := &dns.Conn{Conn: c}
	defer conn.Close()
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	for time.Now().Before(deadline) {
		q.Id = dns.Id()
		conn.SetDeadline(time.Now().Add(time.Second))
		if err := conn.WriteMsg(q); err != nil {
			atomic.AddInt64(&out.Timeouts, 1)
			continue
		}
		r, err := conn.ReadMsg()
		switch {
		case err != nil:
			atomic.AddInt64(&out.Timeouts, 1)
		case r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0:
			atomic.AddInt64(&out.Answered, 1)
		default:
			atomic.AddInt64(&out.Other, 1)
		}
	}
}

// idleReport is what `kgbench idle` prints once its connections are open.
type idleReport struct {
	Open   int    `json:"open"`
	Errors int    `json:"errors"`
	Err    string `json:"last_error,omitempty"`
}

// runIdle prints "waiting", waits for a line on stdin, then opens -n TLS connections to
// --addr, sends one keep-alive request on each and reads the answer, prints
// a report and holds the connections open until stdin closes or --hold
// passes.
func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "host:port")
	n := fs.Int("n", 1000, "connections")
	hold := fs.Duration("hold", 2*time.Minute, "longest time to hold them")
	var headers headerFlags
	fs.Var(&headers, "H", "request header \"Name: value\" (repeatable)")
	fs.Parse(args)
	raiseNoFile()

	// Say that the sandbox is up, then wait for the word to start.
	fmt.Println("waiting")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return fmt.Errorf("wait for go: %w", err)
	}
	conns, rep := openIdle(*addr, *n, headers)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}

	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, in)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(*hold):
	}
	return nil
}

// openIdle opens n connections, 32 at a time. The name is resolved once:
// one lookup gives the sandbox its pin, and the figure is about the proxy.
func openIdle(addr string, n int, headers []string) ([]net.Conn, idleReport) {
	var rep idleReport
	host, port, _ := net.SplitHostPort(addr)
	ips, err := net.DefaultResolver.LookupHost(context.Background(), host)
	if err != nil {
		rep.Errors, rep.Err = n, fmt.Sprintf("resolve %s: %v", host, err)
		return nil, rep
	}
	dst := net.JoinHostPort(ips[0], port)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, 32)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := idleConn(dst, addr, host, headers)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Errors++
				rep.Err = err.Error()
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	rep.Open = len(conns)
	return conns, rep
}

// idleConn opens one TLS connection to dst and completes one HTTP/1.1
// request for addr (host:port) on it, leaving it idle and kept alive.
func idleConn(dst, addr, host string, headers []string) (net.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", dst,
		&tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/idle", nil)
	for _, h := range headers {
		if k, v, ok := strings.Cut(h, ":"); ok {
			req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(c); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		c.Close()
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, nil
}

// raiseNoFile lifts the soft open-file limit to the hard one.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
