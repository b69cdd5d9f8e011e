package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/keygate/keygate/pkg/testworld"
)

// The world is named and addressed apart from the e2e tests' worlds, so
// that a benchmark can run while they do.
var worldConfig = testworld.Config{
	Name:       "kgbench",
	Prefix:     netip.MustParsePrefix("10.252.0.0/24"),
	Prefix6:    netip.MustParsePrefix("fd6b:6777:252::/64"),
	NoStandIns: true,
}

// upstreamPort is the benchmark upstream's port on the world's API address
// (443 there belongs to the world's recording server).
const upstreamPort = 8443

// upstreamBody is what the upstream answers an authorized request with.
var upstreamBody = []byte("{\"ok\":true,\"from\":\"kgbench upstream\"}\n")

// benchWorld is the test world plus what the benchmark adds to it.
type benchWorld struct {
	*testworld.World
	host      string         // bench.<zone>, the upstream's name
	addr      netip.AddrPort // where the upstream listens
	secret    string         // the real secret the upstream demands
	caFile    string         // PEM: the world's CA and the benchmark CA
	certFile  string         // leaf for host and addr's IP, for the peers and the upstream
	keyFile   string
	benchCA   *x509.CertPool // verifies the leaf
	leaf      tls.Certificate
	upstream  *http.Server
	placehold string // what the peers' clients send, for the peers to replace
}

// startWorld starts the world and the upstream inside it, and gives the
// upstream its name in the world's DNS.
func (e *env) startWorld(cl *cleanups) error {
	w, err := testworld.Start(worldConfig)
	if err != nil {
		return fmt.Errorf("start test world: %w", err)
	}
	cl.add("close test world", w.Close)

	bw := &benchWorld{
		World:     w,
		host:      "bench." + w.Zone,
		addr:      netip.AddrPortFrom(w.API, upstreamPort),
		secret:    "sk-bench-" + randHex(16),
		placehold: "kgbench-placeholder-" + randHex(8),
	}
	if err := bw.writeCerts(e); err != nil {
		return err
	}
	w.SetRecord(bw.host, w.API)

	ln, err := w.Listen("tcp", bw.addr.String())
	if err != nil {
		return err
	}
	bw.upstream = newUpstream(bw)
	go func() {
		if err := bw.upstream.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "bench: upstream: %v\n", err)
		}
	}()
	cl.add("stop upstream", bw.upstream.Close)
	e.world = bw
	return nil
}

// newUpstream returns the benchmark upstream: HTTP/1.1 and HTTP/2 over TLS,
// 200 with a small body when Authorization carries the real secret and 401
// otherwise. It records nothing, so it can take any load.
func newUpstream(bw *benchWorld) *http.Server {
	want := "Bearer " + bw.secret
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != want {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(upstreamBody)
	})
	return &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{bw.leaf},
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          discardLog,
	}
}

// writeCerts makes the benchmark CA and one leaf for the upstream's name and
// address, and writes the CA bundle keygated and the peers trust.
func (bw *benchWorld) writeCerts(e *env) error {
	caKey, caCert, err := newCA()
	if err != nil {
		return err
	}
	leafKey, leafDER, err := newLeaf(caKey, caCert, bw.host, bw.addr.Addr())
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(leafKey)
	if err != nil {
		return err
	}
	bw.leaf = tls.Certificate{Certificate: [][]byte{leafDER, caCert.Raw}, PrivateKey: leafKey}
	bw.benchCA = x509.NewCertPool()
	bw.benchCA.AddCert(caCert)

	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})
	bw.caFile = e.path("upstream-ca.pem")
	bw.certFile = e.path("leaf.pem")
	bw.keyFile = e.path("leaf.key")
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), caPEM...)
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{bw.caFile, append(append([]byte{}, bw.CAPEM...), caPEM...), 0o644},
		{bw.certFile, chain, 0o644},
		// Readable by all: squid reads it after dropping to its own user.
		{bw.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func newCA() (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := certTemplate("kgbench upstream CA")
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign benchmark CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

// newLeaf issues a server certificate for host and ip: the IP is there for
// peers that dial the upstream by address and verify it.
func newLeaf(caKey *ecdsa.PrivateKey, ca *x509.Certificate, host string, ip netip.Addr) (
	*ecdsa.PrivateKey, []byte, error,
) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := certTemplate(host)
	tmpl.DNSNames = []string{host}
	tmpl.IPAddresses = []net.IP{net.IP(ip.AsSlice()), net.IPv4(127, 0, 0, 1)}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign leaf for %s: %w", host, err)
	}
	return key, der, nil
}

func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
