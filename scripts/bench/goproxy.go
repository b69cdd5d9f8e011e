package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// secretEnv carries the secret to `kgbench goproxy`, keeping it off argv.
const secretEnv = "KGBENCH_SECRET"

// helpers are the programs this binary also is, chosen by os.Args[1]. Some
// of them run inside sandboxes.
var helpers = map[string]func(args []string) error{
	"goproxy": runGoProxy,
	"newconn": runNewConn,
	"connlat": runConnLat,
	"dnsload": runDNSLoad,
	"idle":    runIdle,
}

// runGoProxy is the plain Go reverse proxy row: TLS terminated with a fixed
// leaf, the placeholder in Authorization replaced by the secret, and the
// request forwarded to one upstream over verified TLS, HTTP/2 when the
// upstream offers it. It serves until SIGTERM.
func runGoProxy(args []string) error {
	pa, err := parsePeerArgs("goproxy", args)
	if err != nil {
		return err
	}

	// The transport mirrors keygate's upstream side: HTTP/2 when offered
	// and a pool of idle connections big enough for the load.
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{ServerName: pa.host, RootCAs: pa.roots},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = pa.upstream
			pr.Out.Host = pa.host
			if v := pr.Out.Header.Get("Authorization"); strings.Contains(v, pa.placeholder) {
				pr.Out.Header.Set("Authorization", strings.ReplaceAll(v, pa.placeholder, pa.secret))
			}
		},
		Transport: transport,
		ErrorLog:  discardLog,
	}
	srv := &http.Server{
		Handler:           rp,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{pa.cert}, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          discardLog,
	}
	ln, err := net.Listen("tcp", pa.listen)
	if err != nil {
		return err
	}

	onTerm(func() { srv.Close() })
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// peerArgs is what kgbench's own proxies (goproxy, relay) are given: where
// to listen, the upstream and the trust for it, the certificate to serve,
// and the placeholder to replace by the secret (from $KGBENCH_SECRET, off
// argv).
type peerArgs struct {
	listen, upstream, host string
	placeholder, secret    string
	cert                   tls.Certificate
	roots                  *x509.CertPool
}

func parsePeerArgs(name string, args []string) (*peerArgs, error) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "upstream address host:port")
	host := fs.String("host", "", "upstream's TLS server name")
	caFile := fs.String("ca", "", "PEM CA bundle trusted for the upstream")
	certFile := fs.String("cert", "", "PEM certificate chain to serve")
	keyFile := fs.String("key", "", "PEM key of -cert")
	placeholder := fs.String("placeholder", "", "text to replace with $"+secretEnv+" in Authorization")
	fs.Parse(args)

	pa := &peerArgs{listen: *listen, upstream: *upstream, host: *host, placeholder: *placeholder,
		secret: os.Getenv(secretEnv)}
	if pa.upstream == "" || pa.host == "" || pa.secret == "" || pa.placeholder == "" {
		return nil, errors.New("need --upstream, --host, --placeholder and $" + secretEnv)
	}
	var err error
	if pa.cert, err = tls.LoadX509KeyPair(*certFile, *keyFile); err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return nil, err
	}
	pa.roots = x509.NewCertPool()
	pa.roots.AppendCertsFromPEM(pem)
	return pa, nil
}

// onTerm calls stop, once, on SIGTERM or SIGINT.
func onTerm(stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		stop()
	}()
}
