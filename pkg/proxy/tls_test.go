package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"github.com/keygate/keygate/pkg/ca"
)

// A client with Go's defaults, which offers X25519MLKEM768 first, gets a
// classical key exchange from the sandbox-facing listener, without a
// retry, and the ALPN it asked for; the leaf comes from the host CA, as in
// keygated.
func TestSandboxTLSKeyExchange(t *testing.T) {
	hostCA, err := ca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(hostCA.Certificate())
	leaves := hostCA.NewLeaves(ca.LeafConfig{})

	for _, alpn := range []string{"h2", "http/1.1"} {
		c, s := net.Pipe()
		srv := tls.Server(s, sandboxTLS(leaves))
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
