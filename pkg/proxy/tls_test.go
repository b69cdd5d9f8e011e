package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

type oneCert struct{ c *tls.Certificate }

func (o oneCert) Get(string) (*tls.Certificate, error) { return o.c, nil }

// A client with Go's defaults, which offers X25519MLKEM768 first, gets a
// classical key exchange from the sandbox-facing listener, without a
// retry, and the ALPN it asked for.
func TestSandboxTLSKeyExchange(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.test"},
		DNSNames: []string{"api.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)

	for _, alpn := range []string{"h2", "http/1.1"} {
		c, s := net.Pipe()
		srv := tls.Server(s, sandboxTLS(oneCert{&tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}))
		go srv.Handshake()
		cli := tls.Client(c, &tls.Config{ServerName: "api.test", RootCAs: roots, NextProtos: []string{alpn}})
		if err := cli.Handshake(); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		st := cli.ConnectionState()
		if st.CurveID != tls.X25519 || st.NegotiatedProtocol != alpn || st.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %v, %q, %x; want X25519, %q, TLS 1.3", st.CurveID, st.NegotiatedProtocol, st.Version, alpn)
		}
		if st.HelloRetryRequest {
			t.Error("the client was asked to retry its hello")
		}
		c.Close() // not cli.Close: its close_notify would wait on the synchronous pipe
		s.Close()
	}
}
