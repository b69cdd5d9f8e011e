package testworld

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/internal/testutil"
)

// testPrefixes returns world prefixes for test n, away from DefaultPrefix
// and DefaultPrefix6, so that the test can run beside end-to-end tests of
// other packages that use the default world. The tests of this package never
// run in parallel with each other: only one world at a time can hold the
// stand-ins' routes.
func testPrefixes(n int) (netip.Prefix, netip.Prefix) {
	v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(n), 0}), 24)
	v6 := netip.MustParsePrefix("fd6b:6777:251::/64").Addr().As16()
	v6[7] = byte(n)
	return v4, netip.PrefixFrom(netip.AddrFrom16(v6), 64)
}

// testConfig returns a Config named name on testPrefixes(n).
func testConfig(name string, n int) Config {
	v4, v6 := testPrefixes(n)
	return Config{Name: name, Prefix: v4, Prefix6: v6}
}

func startWorld(t *testing.T, cfg Config) *World {
	t.Helper()
	testutil.RequireRoot(t)
	w, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

func TestWorld(t *testing.T) {
	w := startWorld(t, testConfig("kgwt1", 1))

	t.Run("dns", func(t *testing.T) { testDNS(t, w) })
	t.Run("https", func(t *testing.T) { testHTTPS(t, w) })
	t.Run("https over ipv6", func(t *testing.T) { testHTTPS6(t, w) })
	t.Run("udp sink", func(t *testing.T) { testUDPSink(t, w) })
	t.Run("tcp sink", func(t *testing.T) { testTCPSink(t, w) })
	t.Run("metadata", func(t *testing.T) { testMetadata(t, w) })
	t.Run("stray dns", func(t *testing.T) { testStrayDNS(t, w) })
}

func testDNS(t *testing.T, w *World) {
	w.SetRecord("rebind."+w.Zone, netip.MustParseAddr("127.0.0.1"))

	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		want   []netip.Addr
		cnames int
	}{
		{"api", w.APIHost(), dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.API}, 0},
		{"api aaaa", w.APIHost(), dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{w.API6}, 0},
		{"api6 aaaa", w.API6Host(), dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{w.API6}, 0},
		{"api6 has no a", w.API6Host(), dns.TypeA, dns.RcodeSuccess, nil, 0},
		{"evil", w.AttackerHost(), dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.Attacker}, 0},
		{"evil aaaa", w.AttackerHost(), dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{w.Attacker6}, 0},
		{"other mixed case", "OTHER." + w.Zone, dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.Other}, 0},
		{"other aaaa", w.OtherHost(), dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{w.Other6}, 0},
		{"alias", "alias." + w.Zone, dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.API}, 1},
		{"alias aaaa", "alias." + w.Zone, dns.TypeAAAA, dns.RcodeSuccess, []netip.Addr{w.API6}, 1},
		{"set record", "rebind." + w.Zone, dns.TypeA, dns.RcodeSuccess,
			[]netip.Addr{netip.MustParseAddr("127.0.0.1")}, 0},
		{"set record aaaa nodata", "rebind." + w.Zone, dns.TypeAAAA, dns.RcodeSuccess, nil, 0},
		{"unknown", "nope." + w.Zone, dns.TypeA, dns.RcodeNameError, nil, 0},
		{"txt", "c2VjcmV0.evil." + w.Zone, dns.TypeTXT, dns.RcodeNameError, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, server := range []netip.AddrPort{w.DNS, w.DNS6} {
				for _, network := range []string{"udp", "tcp"} {
					resp := query(t, server, network, tt.qname, tt.qtype)
					if resp.Rcode != tt.rcode {
						t.Fatalf("%s %s: rcode %s, want %s", server, network,
							dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
					}
					got, cnames := answerAddrs(resp)
					if !equalAddrs(got, tt.want) || cnames != tt.cnames {
						t.Errorf("%s %s: answer %v with %d CNAMEs, want %v with %d",
							server, network, got, cnames, tt.want, tt.cnames)
					}
				}
			}
		})
	}

	if !w.Received([]byte("C2VJCMV0")) {
		t.Error("Received does not find a TXT query name, compared case-insensitively")
	}
	srcs := make(map[netip.Addr]bool)
	for _, q := range w.DNSQueries() {
		if q.Type == "TXT" {
			srcs[q.Src.Addr()] = true
		}
	}
	if len(srcs) != 2 || !srcs[w.HostIP] || !srcs[w.HostIP6] {
		t.Errorf("TXT queries came from %v, want %s and %s", srcs, w.HostIP, w.HostIP6)
	}
}

func query(t *testing.T, server netip.AddrPort, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), qtype)
	client := &dns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := client.Exchange(msg, server.String())
	if err != nil {
		t.Fatalf("query %s %s over %s to %s: %v", name, dns.TypeToString[qtype], network, server, err)
	}
	return resp
}

func answerAddrs(m *dns.Msg) (addrs []netip.Addr, cnames int) {
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A.To4())
			addrs = append(addrs, a)
		case *dns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			addrs = append(addrs, a)
		case *dns.CNAME:
			cnames++
		}
	}
	return addrs, cnames
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testHTTPS(t *testing.T, w *World) {
	tests := []struct {
		name      string
		http2     bool
		wantProto string
	}{
		{"http2", true, "HTTP/2.0"},
		{"http1", false, "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			marker := "marker-" + tt.name + "-4f1c"
			before := len(w.Requests(w.APIHost()))

			client := worldClient(t, w, w.API, tt.http2)
			req, err := http.NewRequest("POST", "https://"+w.APIHost()+"/x?q=1",
				strings.NewReader("body-"+tt.name))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Test-Marker", marker)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			defer resp.Body.Close()

			var echo map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
				t.Fatalf("decode echo: %v", err)
			}
			if resp.StatusCode != 200 || echo["method"] != "POST" || echo["path"] != "/x?q=1" {
				t.Errorf("response %d %v", resp.StatusCode, echo)
			}

			reqs := w.Requests(w.APIHost())
			if len(reqs) != before+1 {
				t.Fatalf("api recorded %d requests, want %d", len(reqs), before+1)
			}
			got := reqs[before]
			if got.Header.Get("X-Test-Marker") != marker || got.Proto != tt.wantProto ||
				got.SNI != w.APIHost() || string(got.Body) != "body-"+tt.name || !got.TLS ||
				got.Dst != netip.AddrPortFrom(w.API, 443) {
				t.Errorf("recorded %+v", got)
			}
			if !w.Received([]byte(marker)) {
				t.Error("Received does not find the header marker")
			}
			if w.Received([]byte("never-sent-7d2a")) {
				t.Error("Received finds bytes nobody sent")
			}
		})
	}

	if n := len(w.Requests(w.AttackerHost())); n != 0 {
		t.Errorf("attacker recorded %d requests, want none", n)
	}
}

// testHTTPS6 checks that every HTTPS server answers on its IPv6 address, and
// that only a request for api6.<zone> arriving at API6 is filed under it.
func testHTTPS6(t *testing.T, w *World) {
	tests := []struct {
		name   string
		addr   netip.Addr
		sni    string
		server string // the host it must be filed under
	}{
		{"api6", w.API6, w.API6Host(), w.API6Host()},
		{"api over ipv6", w.API6, w.APIHost(), w.APIHost()},
		{"api6 name over ipv4", w.API, w.API6Host(), w.APIHost()},
		{"other", w.Other6, w.OtherHost(), w.OtherHost()},
		{"evil", w.Attacker6, w.AttackerHost(), w.AttackerHost()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(w.Requests(tt.server))
			resp, err := worldClient(t, w, tt.addr, true).Get("https://" + tt.sni + "/v6")
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			var echo map[string]string
			err = json.NewDecoder(resp.Body).Decode(&echo)
			resp.Body.Close()
			if err != nil || echo["server"] != tt.server {
				t.Errorf("echo %v (%v), want server %s", echo, err, tt.server)
			}

			reqs := w.Requests(tt.server)
			if len(reqs) != before+1 {
				t.Fatalf("%s recorded %d requests, want %d", tt.server, len(reqs), before+1)
			}
			got := reqs[before]
			src := w.HostIP
			if tt.addr.Is6() {
				src = w.HostIP6
			}
			if got.SNI != tt.sni || got.Path != "/v6" || got.Dst != netip.AddrPortFrom(tt.addr, 443) ||
				got.Src.Addr() != src {
				t.Errorf("recorded %+v, want SNI %s, Dst [%s]:443, from %s", got, tt.sni, tt.addr, src)
			}
		})
	}
}

// worldClient returns a client that trusts only the world CA and dials addr
// whatever the URL names, like keygate's proxy after it resolved the name.
func worldClient(t *testing.T, w *World, addr netip.Addr, http2 bool) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(w.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("CA file holds no certificate")
	}

	var protocols http.Protocols
	protocols.SetHTTP1(!http2)
	protocols.SetHTTP2(http2)
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Protocols:       &protocols,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, netip.AddrPortFrom(addr, 443).String())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func testMetadata(t *testing.T, w *World) {
	// No proxy from the environment: the request must go straight there.
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	resp, err := client.Get("http://" + w.MetadataHost() + "/latest/meta-data/iam/")
	if err != nil {
		t.Fatalf("request to metadata server: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}

	reqs := w.Requests("metadata")
	if len(reqs) != 1 {
		t.Fatalf("metadata recorded %d requests, want 1", len(reqs))
	}
	got := reqs[0]
	if got.Path != "/latest/meta-data/iam/" || got.TLS || got.Src.Addr() != w.HostIP ||
		got.Dst != netip.AddrPortFrom(w.Metadata, 80) {
		t.Errorf("recorded %+v, want a plain request from %s to %s:80", got, w.HostIP, w.Metadata)
	}
	if n := len(w.Requests(w.MetadataHost())); n != 1 {
		t.Errorf("Requests(MetadataHost()) has %d requests, want 1", n)
	}
	if !w.Received([]byte("meta-data/iam")) {
		t.Error("Received does not find the metadata request path")
	}
}
