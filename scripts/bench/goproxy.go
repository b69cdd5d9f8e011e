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
	fs := flag.NewFlagSet("goproxy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	upstream := fs.String("upstream", "", "upstream address host:port")
	host := fs.String("host", "", "upstream's TLS server name")
	caFile := fs.String("ca", "", "PEM CA bundle trusted for the upstream")
	certFile := fs.String("cert", "", "PEM certificate chain to serve")
	keyFile := fs.String("key", "", "PEM key of -cert")
	placeholder := fs.String("placeholder", "", "text to replace with $"+secretEnv+" in Authorization")
	fs.Parse(args)

	secret := os.Getenv(secretEnv)
	if *upstream == "" || *host == "" || secret == "" || *placeholder == "" {
		return errors.New("need --upstream, --host, --placeholder and $" + secretEnv)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	// The transport mirrors keygate's upstream side: HTTP/2 when offered
	// and a pool of idle connections big enough for the load.
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     &tls.Config{ServerName: *host, RootCAs: roots},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = *upstream
			pr.Out.Host = *host
			if v := pr.Out.Header.Get("Authorization"); strings.Contains(v, *placeholder) {
				pr.Out.Header.Set("Authorization", strings.ReplaceAll(v, *placeholder, secret))
			}
		},
		Transport: transport,
		ErrorLog:  discardLog,
	}
	srv := &http.Server{
		Handler:           rp,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		ErrorLog:          discardLog,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
