package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLeafVerifies(t *testing.T) {
	c := mustCA(t)
	leaves := c.NewLeaves(LeafConfig{})
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())

	tests := []struct {
		name   string
		host   string // passed to Get
		verify string // name the client checks
		wantOK bool
	}{
		{"dns name", "api.example.com", "api.example.com", true},
		{"other dns name", "api.example.com", "www.example.com", false},
		{"parent name", "api.example.com", "example.com", false},
		{"normalised", "API.Example.COM.", "api.example.com", true},
		{"ipv4", "192.0.2.7", "192.0.2.7", true},
		{"other ipv4", "192.0.2.7", "192.0.2.8", false},
		{"ipv6", "2001:db8::1", "2001:db8::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := leaves.Get(tt.host)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			_, err = cert.Leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.verify,
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tt.wantOK {
				t.Errorf("Verify for %q: err = %v, want ok=%v", tt.verify, err, tt.wantOK)
			}
		})
	}
}

func TestLeafFields(t *testing.T) {
	c := mustCA(t)
	clock := newFakeClock()
	leaves := c.NewLeaves(LeafConfig{Validity: 48 * time.Hour, Now: clock.Now})

	a := mustGet(t, leaves, "a.example.com")
	b := mustGet(t, leaves, "10.1.2.3")
	leaf := a.Leaf

	if len(a.Certificate) != 2 || !bytes.Equal(a.Certificate[0], leaf.Raw) ||
		!bytes.Equal(a.Certificate[1], c.Certificate().Raw) {
		t.Error("chain is not [leaf, CA]")
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "a.example.com" || len(leaf.IPAddresses) != 0 {
		t.Errorf("DNS leaf SANs = %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	if len(b.Leaf.IPAddresses) != 1 || !b.Leaf.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) ||
		len(b.Leaf.DNSNames) != 0 {
		t.Errorf("IP leaf SANs = %v %v", b.Leaf.DNSNames, b.Leaf.IPAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("usage: ca=%v ku=%v eku=%v", leaf.IsCA, leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	if want := clock.Now().Add(-time.Hour); !leaf.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, want)
	}
	if want := clock.Now().Add(48 * time.Hour); !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, want)
	}
	if a.PrivateKey != b.PrivateKey {
		t.Error("leaves of one Leaves do not share a key")
	}
	if leaf.SerialNumber.Cmp(b.Leaf.SerialNumber) == 0 {
		t.Error("two leaves share a serial number")
	}
}

func TestGetCacheHit(t *testing.T) {
	leaves := mustCA(t).NewLeaves(LeafConfig{})

	first := mustGet(t, leaves, "api.example.com")
	again := mustGet(t, leaves, "api.example.com")
	normalised := mustGet(t, leaves, "API.example.com.")
	if first != again || first != normalised {
		t.Error("cache hit returned a different certificate")
	}
	if hits, misses := leaves.Stats(); hits != 2 || misses != 1 {
		t.Errorf("Stats = %d hits, %d misses; want 2, 1", hits, misses)
	}
}

func TestGetInvalidHost(t *testing.T) {
	leaves := mustCA(t).NewLeaves(LeafConfig{})
	for _, host := range []string{"", "*.example.com", "a b"} {
		if _, err := leaves.Get(host); !errors.Is(err, ErrInvalidHost) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidHost", host, err)
		}
	}
	if hits, misses := leaves.Stats(); hits != 0 || misses != 0 {
		t.Errorf("refused hosts counted in Stats: %d hits, %d misses", hits, misses)
	}
}

func TestGetEvictsLeastRecentlyUsed(t *testing.T) {
	leaves := mustCA(t).NewLeaves(LeafConfig{MaxEntries: 2})

	a := mustGet(t, leaves, "a.example.com")
	b := mustGet(t, leaves, "b.example.com")
	mustGet(t, leaves, "a.example.com") // a is now more recent than b
	mustGet(t, leaves, "c.example.com") // evicts b

	if n := cacheLen(leaves); n != 2 {
		t.Errorf("cache holds %d entries, want 2", n)
	}
	if got := mustGet(t, leaves, "a.example.com"); got != a {
		t.Error("a was evicted, want it kept")
	}
	if got := mustGet(t, leaves, "b.example.com"); got == b {
		t.Error("b was kept, want it evicted")
	}
	// Misses: a, b, c, b again. Hits: a twice.
	if hits, misses := leaves.Stats(); hits != 2 || misses != 4 {
		t.Errorf("Stats = %d hits, %d misses; want 2, 4", hits, misses)
	}
}

func TestGetRenews(t *testing.T) {
	// With 9h validity, a leaf is renewed once less than 3h remain.
	tests := []struct {
		name      string
		advance   time.Duration
		wantRenew bool
	}{
		{"fresh", 0, false},
		{"a third remains", 6 * time.Hour, false},
		{"less than a third remains", 6*time.Hour + time.Second, true},
		{"expired", 10 * time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			leaves := mustCA(t).NewLeaves(LeafConfig{Validity: 9 * time.Hour, Now: clock.Now})
			old := mustGet(t, leaves, "api.example.com")

			clock.Advance(tt.advance)
			got := mustGet(t, leaves, "api.example.com")
			if renewed := got != old; renewed != tt.wantRenew {
				t.Fatalf("renewed = %v, want %v", renewed, tt.wantRenew)
			}
			wantExpiry := clock.Now().Add(9 * time.Hour)
			if tt.wantRenew && !got.Leaf.NotAfter.Equal(wantExpiry) {
				t.Errorf("renewed leaf expires %v, want %v", got.Leaf.NotAfter, wantExpiry)
			}
			if got2 := mustGet(t, leaves, "api.example.com"); got2 != got {
				t.Error("the renewed leaf was not cached")
			}
		})
	}
}

func TestGetConcurrentIssuesOnce(t *testing.T) {
	leaves := mustCA(t).NewLeaves(LeafConfig{})
	const n = 64

	// Issuance fetches the shared key first. Holding it back until all n
	// Gets have missed makes every one of them find the issuance in flight,
	// and counting the fetches counts the issuances.
	var issued atomic.Int32
	key := leaves.key
	leaves.key = func() (*ecdsa.PrivateKey, error) {
		issued.Add(1)
		for _, misses := leaves.Stats(); misses < n; _, misses = leaves.Stats() {
			runtime.Gosched()
		}
		return key()
	}

	got := make([]*tls.Certificate, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cert, err := leaves.Get("api.example.com")
			if err != nil {
				t.Errorf("Get: %v", err)
			}
			got[i] = cert
		})
	}
	wg.Wait()

	if issued.Load() != 1 {
		t.Errorf("issued %d leaves, want 1", issued.Load())
	}
	for i, cert := range got {
		if cert != got[0] {
			t.Fatalf("Get %d returned a different certificate", i)
		}
	}
	if hits, misses := leaves.Stats(); hits != 0 || misses != n {
		t.Errorf("Stats = %d hits, %d misses; want 0, %d", hits, misses, n)
	}
}

// TestHandshake serves a leaf through crypto/tls to a client trusting only
// the CA, as a sandbox would see it.
func TestHandshake(t *testing.T) {
	c := mustCA(t)
	leaves := c.NewLeaves(LeafConfig{})
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())

	serverConn, clientConn := net.Pipe()
	defer clientConn.Close()
	server := tls.Server(serverConn, &tls.Config{
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return leaves.Get(hello.ServerName)
		},
	})
	go func() {
		defer serverConn.Close()
		server.HandshakeContext(context.Background())
	}()

	client := tls.Client(clientConn, &tls.Config{RootCAs: roots, ServerName: "api.example.com"})
	if err := client.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if chain := client.ConnectionState().PeerCertificates; len(chain) != 2 {
		t.Errorf("server sent %d certificates, want 2", len(chain))
	}
}

func BenchmarkLeavesGetHit(b *testing.B) {
	leaves := mustCA(b).NewLeaves(LeafConfig{})
	mustGet(b, leaves, "api.example.com")
	for b.Loop() {
		if _, err := leaves.Get("api.example.com"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLeavesGetMiss(b *testing.B) {
	leaves := mustCA(b).NewLeaves(LeafConfig{})
	mustGet(b, leaves, "warm.example.com") // generate the shared key outside the loop
	i := 0
	for b.Loop() {
		i++
		if _, err := leaves.Get(fmt.Sprintf("h%d.example.com", i)); err != nil {
			b.Fatal(err)
		}
	}
}

func mustGet(t testing.TB, l *Leaves, host string) *tls.Certificate {
	t.Helper()
	cert, err := l.Get(host)
	if err != nil {
		t.Fatalf("Get(%q): %v", host, err)
	}
	return cert
}

func cacheLen(l *Leaves) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache.len()
}
