package resolver

import "sync/atomic"

// Stats counts the queries a Resolver has handled since it was created.
//
// Every query except a response (which is ignored) has exactly one outcome:
// Answered, NXDomainDenied, Refused, ServFail or Malformed. The other
// counters overlap them: CacheHit and Collapsed tell where the answer of an
// Answered or ServFail query came from, RebindingDropped counts Answered
// queries that lost addresses, and the Suspicious counters look at the
// names of all queries from known sandboxes, whatever their outcome.
//
// The names in brackets are the outcome labels to export them under.
type Stats struct {
	Answered       uint64 // [answered] NOERROR, or NXDOMAIN from upstream
	NXDomainDenied uint64 // [nxdomain_denied] NXDOMAIN by policy, never forwarded
	Refused        uint64 // [refused] REFUSED: unknown source, class or type
	ServFail       uint64 // [servfail] upstream failed or timed out
	Malformed      uint64 // [malformed] FORMERR, NOTIMP or BADVERS

	CacheHit         uint64 // [cache_hit] answered from the cache
	Collapsed        uint64 // [collapsed] shared another query's upstream exchange
	RebindingDropped uint64 // [rebinding_dropped] had internal addresses dropped

	SuspiciousLong    uint64 // [suspicious_long] name or a label unusually long
	SuspiciousEntropy uint64 // [suspicious_entropy] a label looks like encoded data
}

// counters are the live values behind Stats.
type counters struct {
	answered, nxdomainDenied, refused, servfail, malformed atomic.Uint64
	cacheHit, collapsed, rebindingDropped                  atomic.Uint64
	suspiciousLong, suspiciousEntropy                      atomic.Uint64
}

// Stats returns the current counts. Each counter is read atomically, but
// not all of them at the same instant.
func (r *Resolver) Stats() Stats {
	c := &r.stats
	return Stats{
		Answered:          c.answered.Load(),
		NXDomainDenied:    c.nxdomainDenied.Load(),
		Refused:           c.refused.Load(),
		ServFail:          c.servfail.Load(),
		Malformed:         c.malformed.Load(),
		CacheHit:          c.cacheHit.Load(),
		Collapsed:         c.collapsed.Load(),
		RebindingDropped:  c.rebindingDropped.Load(),
		SuspiciousLong:    c.suspiciousLong.Load(),
		SuspiciousEntropy: c.suspiciousEntropy.Load(),
	}
}
