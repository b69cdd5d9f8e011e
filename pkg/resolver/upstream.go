package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
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

// resolveA answers an A query for an allowed name: it asks upstream, keeps
// the permitted addresses the asked name leads to, pins each of them for
// sandbox and replies with them.
func (r *Resolver) resolveA(sandbox string, req *dns.Msg) *dns.Msg {
	q := req.Question[0]
	name := domain.Normalize(q.Name)
	attrs := []any{logSandbox, sandbox, logName, name, logType, "A"}

	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	up, err := r.exchange(ctx, q.Name)
	if err != nil {
		r.log.Error("dns upstream failed", append(attrs, logError, err)...)
		return reply(req, dns.RcodeServerFailure)
	}

	switch up.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return reply(req, dns.RcodeNameError)
	default:
		err := fmt.Errorf("upstream answered %s", dns.RcodeToString[up.Rcode])
		r.log.Error("dns upstream failed", append(attrs, logError, err)...)
		return reply(req, dns.RcodeServerFailure)
	}

	addrs, ttl := chainAddrs(up.Answer, q.Name)
	kept := slices.DeleteFunc(slices.Clone(addrs), func(a netip.Addr) bool { return !r.permitted(a) })
	if dropped := len(addrs) - len(kept); dropped > 0 {
		r.log.Warn("dns answer dropped", append(attrs,
			logReason, "internal address for a public name", logDropped, dropped)...)
	}

	resp := reply(req, dns.RcodeSuccess)
	for _, addr := range kept {
		// Pin before the reply leaves, so the client can never connect to an
		// address it was given before the proxy would accept it.
		r.pins.Add(sandbox, addr, name, time.Duration(ttl)*time.Second)
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   addr.AsSlice(),
		})
	}
	r.log.Debug("dns query answered", append(attrs, logAnswers, len(kept))...)
	return resp
}

// exchange asks upstream for the A records of name, over UDP and again over
// TCP if the UDP reply was truncated, both within ctx.
func (r *Resolver) exchange(ctx context.Context, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
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
	if len(resp.Question) != 1 || resp.Question[0].Qtype != dns.TypeA ||
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
// the distinct addresses of the A records at its end, with the smallest TTL
// seen along the way. Records off the chain are ignored: an upstream cannot
// attach an address to the asked name by adding an unrelated record.
//
// The addresses are returned flattened, as if name itself held them, so the
// TTL must be the chain's minimum: a client then caches name → address no
// longer than every link of the chain is valid.
func chainAddrs(answer []dns.RR, name string) ([]netip.Addr, uint32) {
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
		a, ok := rr.(*dns.A)
		if !ok || !strings.EqualFold(a.Hdr.Name, target) {
			continue
		}
		addr, ok := netip.AddrFromSlice(a.A.To4())
		if !ok || slices.Contains(addrs, addr) {
			continue
		}
		addrs = append(addrs, addr)
		ttl = min(ttl, a.Hdr.Ttl)
	}
	if len(addrs) == 0 {
		return nil, 0
	}
	return addrs, ttl
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
