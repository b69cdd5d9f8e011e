package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/keygate/keygate/pkg/domain"
)

// maxChain bounds the CNAME links followed from the asked name, so that a
// looping chain in an upstream answer ends.
const maxChain = 8

// errMismatch is returned for an upstream reply to another question.
var errMismatch = errors.New("upstream reply does not match the question")

// fetch resolves name, of type qtype (A or AAAA), upstream within the
// resolver's timeout and caches the answer. An upstream NXDOMAIN is an
// answer; any other error rcode is an error.
func (r *Resolver) fetch(name string, qtype uint16) (answer, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	up, err := r.exchange(ctx, name, qtype)
	if err != nil {
		return answer{}, err
	}

	ans := answer{rcode: up.Rcode}
	var ttl uint32
	switch up.Rcode {
	case dns.RcodeSuccess:
		ans.addrs, ttl = chainAddrs(up.Answer, name, qtype)
		if len(ans.addrs) == 0 {
			ttl = r.negativeTTLOf(up)
		}
	case dns.RcodeNameError:
		ttl = r.negativeTTLOf(up)
	default:
		return answer{}, fmt.Errorf("upstream answered %s", dns.RcodeToString[up.Rcode])
	}

	// However long upstream says, no answer outlives the pins it creates.
	ttl = min(ttl, r.maxTTL)
	ans.expires = r.now().Add(time.Duration(ttl) * time.Second)
	if ttl > 0 {
		k := cacheKey{name: domain.Normalize(name), qtype: qtype}
		if len(ans.addrs) > 0 {
			r.cache.put(k, ans)
		} else {
			r.negative.put(k, ans)
		}
	}
	return ans, nil
}

// negativeTTLOf returns how long the negative answer up may be cached: as
// RFC 2308 has it, the lesser of the TTL and the MINIMUM field of the SOA
// record in its authority section, or the resolver's default without one;
// at most maxNegativeTTL.
func (r *Resolver) negativeTTLOf(up *dns.Msg) uint32 {
	ttl := r.negativeTTL
	for _, rr := range up.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl = min(soa.Hdr.Ttl, soa.Minttl)
			break
		}
	}
	return min(ttl, seconds(maxNegativeTTL))
}

// exchange asks upstream for the records of name of type qtype, over UDP and
// again over TCP if the UDP reply was truncated, both within ctx.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(ednsSize, false)

	resp, err := exchangeVia(ctx, r.udp, m, r.upstream)
	if err == nil && resp.Truncated {
		resp, err = exchangeVia(ctx, r.tcp, m, r.upstream)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", r.upstream, err)
	}

	// The client already matched the message ID; check the question too,
	// so a reply to another query can never be pinned under this name.
	if len(resp.Question) != 1 || resp.Question[0].Qtype != qtype ||
		!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) {
		return nil, fmt.Errorf("query %s: %w", r.upstream, errMismatch)
	}
	return resp, nil
}

// exchangeVia sends m to addr with c and waits for the reply until ctx is
// done. dns.Client honours only a context's deadline, not its cancellation
// (miekg/dns sets socket deadlines from ctx.Deadline and never watches
// ctx.Done), so the socket is closed when ctx ends: Shutdown then abandons
// an exchange at once instead of waiting out the timeout.
func exchangeVia(ctx context.Context, c *dns.Client, m *dns.Msg, addr string) (*dns.Msg, error) {
	conn, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, ctxErr
	}
	return resp, err
}

// chainAddrs follows the CNAME chain from name through answer and returns
// the distinct addresses of the records of type qtype (A or AAAA) at its
// end, with the smallest TTL seen along the way. Records off the chain are ignored: an upstream cannot
// attach an address to the asked name by adding an unrelated record.
//
// The addresses are returned flattened, as if name itself held them, so the
// TTL must be the chain's minimum: a client then caches name → address no
// longer than every link of the chain is valid.
func chainAddrs(answer []dns.RR, name string, qtype uint16) ([]netip.Addr, uint32) {
	ttl := uint32(math.MaxUint32)
	target := dns.Fqdn(name)
	for range maxChain {
		next, linkTTL, ok := cname(answer, target)
		if !ok {
			break
		}
		ttl = min(ttl, linkTTL)
		target = next
	}

	var addrs []netip.Addr
	for _, rr := range answer {
		hdr := rr.Header()
		if hdr.Rrtype != qtype || !strings.EqualFold(hdr.Name, target) {
			continue
		}
		addr, ok := rrAddr(rr)
		if !ok || slices.Contains(addrs, addr) {
			continue
		}
		addrs = append(addrs, addr)
		ttl = min(ttl, hdr.Ttl)
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, ttl
}

// rrAddr returns the address of an A or AAAA record. An A address is
// plain IPv4; an AAAA address is IPv6 as given, even v4-mapped.
func rrAddr(rr dns.RR) (netip.Addr, bool) {
	switch rr := rr.(type) {
	case *dns.A:
		return netip.AddrFromSlice(rr.A.To4())
	case *dns.AAAA:
		if len(rr.AAAA) != net.IPv6len {
			return netip.Addr{}, false
		}
		return netip.AddrFromSlice(rr.AAAA)
	}
	return netip.Addr{}, false
}

// cname returns the target and TTL of the CNAME record owned by owner.
func cname(answer []dns.RR, owner string) (target string, ttl uint32, ok bool) {
	for _, rr := range answer {
		if c, isCNAME := rr.(*dns.CNAME); isCNAME && strings.EqualFold(c.Hdr.Name, owner) {
			return c.Target, c.Hdr.Ttl, true
		}
	}
	return "", 0, false
}
