package resolver

import (
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/domain"
)

// resolve answers an A or AAAA query sandbox may make: from the cache if it
// holds a live answer, otherwise from upstream, sharing the exchange with
// any identical query in flight.
func (r *Resolver) resolve(sandbox string, req *dns.Msg) *dns.Msg {
	q := req.Question[0]
	k := cacheKey{name: domain.Normalize(q.Name), qtype: q.Qtype}

	ans, cached := r.cache.get(k, r.now())
	if !cached {
		ans, cached = r.negative.get(k, r.now())
	}
	if cached {
		r.stats.cacheHit.Add(1)
		return r.respondWith(sandbox, req, ans, true)
	}

	ans, shared, err := r.flights.do(k, func() (answer, error) { return r.fetch(q.Name, q.Qtype) })
	if shared {
		r.stats.collapsed.Add(1)
	}
	if err != nil {
		r.stats.servfail.Add(1)
		r.errorUpstream(sandbox, k.name, typeString(q.Qtype), err)
		return reply(req, dns.RcodeServerFailure)
	}
	return r.respondWith(sandbox, req, ans, false)
}

// respondWith answers req from ans for sandbox: it keeps the permitted
// addresses, pins each of them for sandbox with the answer's remaining TTL
// and replies with them.
func (r *Resolver) respondWith(sandbox string, req *dns.Msg, ans answer, cached bool) *dns.Msg {
	q := req.Question[0]
	name := domain.Normalize(q.Name)
	qtype := typeString(q.Qtype)
	r.stats.answered.Add(1)
	if ans.rcode == dns.RcodeNameError {
		r.log.Debug("dns query answered",
			logSandbox, sandbox, logName, name, logType, qtype, logAnswers, 0, logCached, cached)
		return reply(req, dns.RcodeNameError)
	}

	kept := slices.DeleteFunc(slices.Clone(ans.addrs), func(a netip.Addr) bool { return !r.permitted(a) })
	if dropped := len(ans.addrs) - len(kept); dropped > 0 {
		r.stats.rebindingDropped.Add(1)
		r.warnDropped(sandbox, name, qtype, dropped)
	}

	ttl := ans.ttl(r.now())
	resp := reply(req, dns.RcodeSuccess)
	for _, addr := range kept {
		// Pin before the reply leaves, so the client can never connect to an
		// address it was given before the proxy would accept it.
		r.pins.Add(sandbox, addr, name, time.Duration(ttl)*time.Second)
		resp.Answer = append(resp.Answer, addrRR(q.Name, q.Qtype, addr, ttl))
	}
	r.log.Debug("dns query answered",
		logSandbox, sandbox, logName, name, logType, qtype, logAnswers, len(kept), logCached, cached)
	return resp
}

// addrRR returns a record of type qtype, A or AAAA, for addr owned by name.
func addrRR(name string, qtype uint16, addr netip.Addr, ttl uint32) dns.RR {
	if qtype == dns.TypeA {
		return &dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   addr.AsSlice(),
		}
	}
	return &dns.AAAA{
		Hdr:  dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
		AAAA: addr.AsSlice(),
	}
}
