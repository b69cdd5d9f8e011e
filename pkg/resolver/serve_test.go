package resolver

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/pin"
)

func newTestResolver(t *testing.T, upstream string) *Resolver {
	t.Helper()
	r, err := New(Config{
		Upstream:  upstream,
		Sandboxes: loopbackSandbox(defaultPolicy),
		Pins:      pin.New(pin.Config{}),
		Timeout:   10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func shutdown(t testing.TB, r *Resolver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestServeOneSocket(t *testing.T) {
	up := startUpstream(t)
	tests := []struct {
		name    string
		network string
	}{
		{"udp only", "udp"},
		{"tcp only", "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestResolver(t, up.addr)
			pc, ln := listen(t)
			addr := pc.LocalAddr().String()
			served := make(chan error, 1)
			if tt.network == "udp" {
				ln.Close()
				go func() { served <- r.Serve(pc, nil) }()
			} else {
				pc.Close()
				go func() { served <- r.Serve(nil, ln) }()
			}

			h := &harness{addr: addr}
			if resp := h.query(t, tt.network, "api.example.test", dns.TypeA); len(resp.Answer) != 1 {
				t.Errorf("answers %v, want one", resp.Answer)
			}
			shutdown(t, r)
			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
}

func TestServeNoSocket(t *testing.T) {
	r := newTestResolver(t, "127.0.0.1:1")
	if err := r.Serve(nil, nil); err == nil {
		t.Error("Serve(nil, nil) succeeded")
	}
}

func TestServeAfterShutdown(t *testing.T) {
	r := newTestResolver(t, "127.0.0.1:1")
	shutdown(t, r)

	pc, ln := listen(t)
	defer pc.Close()
	defer ln.Close()
	if err := r.Serve(pc, ln); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown: %v, want ErrClosed", err)
	}
}

func TestServeStopsOnSocketError(t *testing.T) {
	r := newTestResolver(t, "127.0.0.1:1")
	pc, ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- r.Serve(pc, ln) }()

	// Wait until both servers run, then break the TCP one under them.
	waitServing(t, r)
	ln.Close()

	select {
	case err := <-served:
		if err == nil {
			t.Error("Serve returned nil after its listener failed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its listener failed")
	}
	shutdown(t, r)
}

func TestShutdownAbandonsUpstream(t *testing.T) {
	// An upstream that never answers, and a resolver that would wait 10s.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r := newTestResolver(t, silent.LocalAddr().String())

	pc, ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- r.Serve(pc, ln) }()
	waitServing(t, r)

	answered := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("api.example.test.", dns.TypeA)
		c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
		resp, _, _ := c.Exchange(m, pc.LocalAddr().String())
		answered <- resp
	}()
	// Let the query reach the silent upstream.
	deadline := time.Now().Add(5 * time.Second)
	for !received(silent) && time.Now().Before(deadline) {
	}

	start := time.Now()
	shutdown(t, r)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Shutdown took %v with an upstream exchange in flight", elapsed)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if resp := <-answered; resp != nil && resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("abandoned query answered %s, want SERVFAIL or nothing", dns.RcodeToString[resp.Rcode])
	}
}

// received waits briefly for a packet on pc and reports whether one came.
func received(pc net.PacketConn) bool {
	buf := make([]byte, 512)
	_ = pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, _, err := pc.ReadFrom(buf)
	return err == nil
}

// waitServing waits until every server r.Serve started is serving.
func waitServing(t *testing.T, r *Resolver) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		servers := r.servers
		r.mu.Unlock()
		if servers != nil {
			for _, s := range servers {
				select {
				case <-s.started:
				case <-deadline:
					t.Fatal("servers did not start")
				}
			}
			return
		}
		select {
		case <-deadline:
			t.Fatal("Serve did not start its servers")
		case <-time.After(time.Millisecond):
		}
	}
}
