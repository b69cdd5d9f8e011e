package resolver

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestStats(t *testing.T) {
	up := startUpstream(t)
	d := newDirect(t, Config{Upstream: up.addr})

	send := func(src string, req *dns.Msg) {
		t.Helper()
		w := &recorder{remote: &net.UDPAddr{IP: net.ParseIP(src), Port: 5353}}
		d.r.ServeDNS(w, req)
		if w.reply == nil {
			t.Fatal("no reply")
		}
	}
	chaos := new(dns.Msg)
	chaos.SetQuestion("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	twoQuestions := new(dns.Msg)
	twoQuestions.SetQuestion("api.example.test.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	response := new(dns.Msg)
	response.SetQuestion("api.example.test.", dns.TypeA)
	response.Response = true

	d.query(t, srcSB1, "api.example.test", dns.TypeA)                       // answered
	d.query(t, srcSB2, "api.example.test", dns.TypeA)                       // answered, from the cache
	d.query(t, srcSB1, "mixed.example.test", dns.TypeA)                     // answered, addresses dropped
	d.query(t, srcSB1, "api.example.test", dns.TypeTXT)                     // answered empty
	d.query(t, srcOpen, "7f3a9c01be42d856.open.test", dns.TypeA)            // answered NXDOMAIN, encoded
	d.query(t, srcSB1, "evil.attacker.test", dns.TypeA)                     // denied
	d.query(t, srcSB1, strings.Repeat("x", 41)+".attacker.test", dns.TypeA) // denied, long
	d.query(t, srcOpen, "data.attacker.test", dns.TypeTXT)                  // refused
	d.query(t, "192.0.2.1", "api.example.test", dns.TypeA)                  // refused
	send(srcSB1, chaos)                                                     // refused
	d.query(t, srcSB1, "servfail.example.test", dns.TypeA)                  // servfail
	send(srcSB1, twoQuestions)                                              // malformed

	// A response is not a query: it is ignored and counted nowhere.
	d.r.ServeDNS(&recorder{remote: &net.UDPAddr{IP: net.ParseIP(srcSB1), Port: 5353}}, response)

	want := Stats{
		Answered: 5, NXDomainDenied: 2, Refused: 3, ServFail: 1, Malformed: 1,
		CacheHit: 1, RebindingDropped: 1, SuspiciousLong: 1, SuspiciousEntropy: 1,
	}
	if got := d.r.Stats(); got != want {
		t.Errorf("Stats() = %+v\nwant      %+v", got, want)
	}
}
