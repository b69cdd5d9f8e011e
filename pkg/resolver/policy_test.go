package resolver

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func TestDecide(t *testing.T) {
	allowlist := Policy{ID: "sb", Allowed: []string{"api.example.test", "*.cdn.test"}}
	open := Policy{ID: "sb", Allowed: []string{"api.example.test"}, Open: true}

	tests := []struct {
		name       string
		pol        Policy
		qname      string
		qtype      uint16
		wantRcode  int
		wantReason string
	}{
		{"listed A", allowlist, "api.example.test", dns.TypeA, dns.RcodeSuccess, ""},
		{"listed TXT", allowlist, "api.example.test", dns.TypeTXT, dns.RcodeSuccess, ""},
		{"wildcard", allowlist, "a.cdn.test", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"unlisted A", allowlist, "evil.test", dns.TypeA, dns.RcodeNameError, ReasonNameNotAllowed},
		{"unlisted AAAA", allowlist, "evil.test", dns.TypeAAAA, dns.RcodeNameError, ReasonNameNotAllowed},
		{"unlisted TXT", allowlist, "evil.test", dns.TypeTXT, dns.RcodeNameError, ReasonNameNotAllowed},
		{"unlisted NULL", allowlist, "evil.test", dns.TypeNULL, dns.RcodeNameError, ReasonNameNotAllowed},
		{"unlisted ANY", allowlist, "evil.test", dns.TypeANY, dns.RcodeNameError, ReasonNameNotAllowed},
		{"root", allowlist, "", dns.TypeNS, dns.RcodeNameError, ReasonNameNotAllowed},
		{"no policy", Policy{ID: "sb"}, "api.example.test", dns.TypeA, dns.RcodeNameError, ReasonNameNotAllowed},

		{"open listed TXT", open, "api.example.test", dns.TypeTXT, dns.RcodeSuccess, ""},
		{"open unlisted A", open, "www.public.test", dns.TypeA, dns.RcodeSuccess, ""},
		{"open unlisted AAAA", open, "www.public.test", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"open unlisted TXT", open, "x.attacker.test", dns.TypeTXT, dns.RcodeRefused, ReasonTypeNotAllowed},
		{"open unlisted NULL", open, "x.attacker.test", dns.TypeNULL, dns.RcodeRefused, ReasonTypeNotAllowed},
		{"open unlisted ANY", open, "x.attacker.test", dns.TypeANY, dns.RcodeRefused, ReasonTypeNotAllowed},
		{"open unlisted MX", open, "x.attacker.test", dns.TypeMX, dns.RcodeRefused, ReasonTypeNotAllowed},
		{"open unlisted CNAME", open, "x.attacker.test", dns.TypeCNAME, dns.RcodeRefused, ReasonTypeNotAllowed},
		{"open binary label", open, `a\000b.attacker.test`, dns.TypeA, dns.RcodeNameError, ReasonInvalidName},
		{"open space in label", open, `a\032b.attacker.test`, dns.TypeA, dns.RcodeNameError, ReasonInvalidName},
		{"open root", open, "", dns.TypeA, dns.RcodeNameError, ReasonInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcode, reason := decide(tt.pol, tt.qname, tt.qtype)
			if rcode != tt.wantRcode || reason != tt.wantReason {
				t.Errorf("decide = %s %q, want %s %q",
					dns.RcodeToString[rcode], reason, dns.RcodeToString[tt.wantRcode], tt.wantReason)
			}
		})
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		ipv6      bool
		qname     string
		qtype     uint16
		wantRcode int
		wantAns   []string // "owner address"
		wantPins  []pinWant
		upstream  int // questions upstream must see in all
	}{
		// Allowlist mode: nothing unlisted leaves the host, whatever the type.
		{name: "allowlist unlisted A", src: srcSB1, qname: "public.open.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError},
		{name: "allowlist unlisted AAAA", src: srcSB1, ipv6: true, qname: "public.open.test", qtype: dns.TypeAAAA,
			wantRcode: dns.RcodeNameError},
		{name: "allowlist unlisted TXT", src: srcSB1, qname: "data.attacker.test", qtype: dns.TypeTXT,
			wantRcode: dns.RcodeNameError},
		{name: "allowlist unlisted NULL", src: srcSB1, qname: "data.attacker.test", qtype: dns.TypeNULL,
			wantRcode: dns.RcodeNameError},
		{name: "allowlist unlisted ANY", src: srcSB1, qname: "data.attacker.test", qtype: dns.TypeANY,
			wantRcode: dns.RcodeNameError},

		// Open mode: addresses of any name; other types only for listed names.
		{name: "open unlisted A", src: srcOpen, qname: "public.open.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"public.open.test. 198.51.100.60"},
			wantPins:  []pinWant{{"198.51.100.60", "public.open.test"}},
			upstream:  1},
		{name: "open unlisted private A dropped", src: srcOpen, qname: "private.open.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess, upstream: 1},
		{name: "open unlisted nxdomain", src: srcOpen, qname: "missing.open.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError, upstream: 1},
		{name: "open listed A", src: srcOpen, qname: "api.example.test", qtype: dns.TypeA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"api.example.test. 198.51.100.10"},
			wantPins:  []pinWant{{"198.51.100.10", "api.example.test"}},
			upstream:  1},
		{name: "open unlisted AAAA without IPv6", src: srcOpen, qname: "api2.example.test", qtype: dns.TypeAAAA,
			wantRcode: dns.RcodeSuccess},
		{name: "open unlisted AAAA with IPv6", src: srcOpen, ipv6: true,
			qname: "alias.example.test", qtype: dns.TypeAAAA,
			wantRcode: dns.RcodeSuccess,
			wantAns:   []string{"alias.example.test. 2001:db8::10"},
			wantPins:  []pinWant{{"2001:db8::10", "alias.example.test"}},
			upstream:  1},
		{name: "open unlisted TXT", src: srcOpen, qname: "data.attacker.test", qtype: dns.TypeTXT,
			wantRcode: dns.RcodeRefused},
		{name: "open unlisted NULL", src: srcOpen, qname: "data.attacker.test", qtype: dns.TypeNULL,
			wantRcode: dns.RcodeRefused},
		{name: "open unlisted ANY", src: srcOpen, qname: "data.attacker.test", qtype: dns.TypeANY,
			wantRcode: dns.RcodeRefused},
		{name: "open listed TXT answered empty", src: srcOpen, qname: "api.example.test", qtype: dns.TypeTXT,
			wantRcode: dns.RcodeSuccess},
		{name: "open invalid name", src: srcOpen, qname: `a\000b.attacker.test`, qtype: dns.TypeA,
			wantRcode: dns.RcodeNameError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := startUpstream(t)
			d := newDirect(t, Config{Upstream: up.addr, IPv6: tt.ipv6})

			resp := d.query(t, tt.src, tt.qname, tt.qtype)
			if resp.Rcode != tt.wantRcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if got := answerAddrs(resp); !slices.Equal(got, tt.wantAns) {
				t.Errorf("answers %q, want %q", got, tt.wantAns)
			}
			if got := up.total(); got != tt.upstream {
				t.Errorf("upstream saw %d questions, want %d", got, tt.upstream)
			}
			if got := d.pins.Len(); got != len(tt.wantPins) {
				t.Errorf("%d pins, want %d", got, len(tt.wantPins))
			}
			for _, p := range tt.wantPins {
				if !d.pins.Check(directSandboxes[netip.MustParseAddr(tt.src)].ID, netip.MustParseAddr(p.addr), p.name) {
					t.Errorf("no pin (%s, %s)", p.addr, p.name)
				}
			}
		})
	}
}

func TestDenialRecords(t *testing.T) {
	var denials []Denial
	d := newDirect(t, Config{Upstream: "127.0.0.1:1", OnDeny: func(d Denial) { denials = append(denials, d) }})

	d.query(t, srcSB1, "Secret.Attacker.test", dns.TypeTXT)
	d.query(t, srcOpen, "data.attacker.test", dns.TypeNULL)
	d.query(t, "192.0.2.1", "api.example.test", dns.TypeA)

	want := []Denial{
		{Sandbox: "sb1", Name: "secret.attacker.test", Type: "TXT", Reason: ReasonNameNotAllowed},
		{Sandbox: "sbOpen", Name: "data.attacker.test", Type: "NULL", Reason: ReasonTypeNotAllowed},
		{Name: "api.example.test", Type: "A", Reason: ReasonUnknownSource},
	}
	if !slices.Equal(denials, want) {
		t.Errorf("OnDeny got %+v, want %+v", denials, want)
	}
	recs := d.logs.records(t, "dns query denied")
	if len(recs) != len(want) {
		t.Fatalf("%d denial records, want %d", len(recs), len(want))
	}
	for i, rec := range recs {
		if rec["level"] != "WARN" || rec["sandbox"] != want[i].Sandbox || rec["reason"] != want[i].Reason {
			t.Errorf("record %d = %v, want a WARN for %+v", i, rec, want[i])
		}
	}
	if recs[2]["source"] != "192.0.2.1" {
		t.Errorf("unknown-source record %v lacks the source", recs[2])
	}
}
