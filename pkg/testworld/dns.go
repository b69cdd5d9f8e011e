package testworld

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// recordTTL is short so a resolver that caches still sees SetRecord changes
// within a test.
const recordTTL = 5

// zone holds the world's DNS records. Names are kept lowercase and fully
// qualified.
type zone struct {
	origin string // e.g. "example.test."

	mu sync.RWMutex
	// mu guards the maps below. A name is in at most one of them.
	addrs map[string][]netip.Addr
	cname map[string]string
}

func newZone(origin string) *zone {
	return &zone{
		origin: dns.Fqdn(origin),
		addrs:  make(map[string][]netip.Addr),
		cname:  make(map[string]string),
	}
}

func canonical(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// set replaces name's records with addrs; no addrs removes name.
func (z *zone) set(name string, addrs []netip.Addr) {
	name = canonical(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.cname, name)
	if len(addrs) == 0 {
		delete(z.addrs, name)
		return
	}
	z.addrs[name] = append([]netip.Addr(nil), addrs...)
}

// setCNAME makes name an alias of target.
func (z *zone) setCNAME(name, target string) {
	name = canonical(name)
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.addrs, name)
	z.cname[name] = canonical(target)
}

// answer returns the records for a question of type qtype about name, and
// whether name exists. Only one level of CNAME is followed; the world never
// chains aliases.
func (z *zone) answer(name string, qtype uint16) ([]dns.RR, bool) {
	z.mu.RLock()
	defer z.mu.RUnlock()

	var rrs []dns.RR
	owner := name
	if target, ok := z.cname[canonical(name)]; ok {
		rrs = append(rrs, &dns.CNAME{Hdr: header(owner, dns.TypeCNAME), Target: target})
		if qtype == dns.TypeCNAME {
			return rrs, true
		}
		owner = target
	}
	addrs, ok := z.addrs[canonical(owner)]
	if !ok && len(rrs) == 0 {
		return nil, false
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && qtype == dns.TypeA:
			rrs = append(rrs, &dns.A{Hdr: header(owner, dns.TypeA), A: net.IP(a.AsSlice())})
		case a.Is6() && qtype == dns.TypeAAAA:
			rrs = append(rrs, &dns.AAAA{Hdr: header(owner, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	}
	return rrs, true
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: recordTTL}
}

// dnsHandler answers from a zone and records every question.
type dnsHandler struct {
	zone *zone
	rec  *recorder
}

var _ dns.Handler = (*dnsHandler)(nil)

func (h *dnsHandler) ServeDNS(rw dns.ResponseWriter, req *dns.Msg) {
	src := addrPortOf(rw.RemoteAddr())
	for _, q := range req.Question {
		h.rec.addQuery(DNSQuery{
			Name: strings.TrimSuffix(q.Name, "."),
			Type: dns.TypeToString[q.Qtype],
			Src:  src,
		})
	}

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	switch {
	case len(req.Question) != 1:
		resp.Rcode = dns.RcodeFormatError
	case req.Question[0].Qtype == dns.TypeTXT:
		// TXT is the classic exfiltration channel: record it, never answer.
		resp.Rcode = dns.RcodeNameError
	default:
		q := req.Question[0]
		rrs, ok := h.zone.answer(q.Name, q.Qtype)
		if !ok {
			resp.Rcode = dns.RcodeNameError
		}
		resp.Answer = rrs
	}
	_ = rw.WriteMsg(resp)
}

// addrPortOf converts a *net.UDPAddr or *net.TCPAddr.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return unmapPort(a.AddrPort())
	case *net.TCPAddr:
		return unmapPort(a.AddrPort())
	}
	return netip.AddrPort{}
}

// serveDNS starts srv and waits until it accepts queries, so a Close right
// after Start finds it running and can shut it down.
func (w *World) serveDNS(srv *dns.Server) error {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	failed := make(chan error, 1)
	w.wg.Go(func() { failed <- srv.ActivateAndServe() })

	select {
	case <-started:
		w.stop = append(w.stop, srv.Shutdown)
		return nil
	case err := <-failed:
		return fmt.Errorf("start DNS server: %w", err)
	}
}
