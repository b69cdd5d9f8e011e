package hostagent

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
)

// errPoolExhausted is returned when every sandbox address is leased.
var errPoolExhausted = errors.New("no free sandbox address")

// addrPool leases /30 blocks of the sandbox CIDR: block i holds the host
// end at .4i+1 and the sandbox at .4i+2. Block 0 is reserved: its first
// address is the agent's service address (proxy and resolver). With an
// IPv6 prefix (a /48), block i also owns the /64 <prefix>:i::, with the
// host end at ::1 and the sandbox at ::2, and the service address is
// <prefix>::1.
type addrPool struct {
	base  netip.Addr
	base6 netip.Addr // zero without IPv6
	size  int        // number of blocks

	mu     sync.Mutex
	leased map[int]bool // guarded by mu
	next   int          // guarded by mu; where the search for a free block starts
}

func newAddrPool(cidr netip.Prefix) *addrPool {
	return &addrPool{
		base:   cidr.Masked().Addr(),
		size:   1 << (32 - cidr.Bits()) / 4,
		leased: make(map[int]bool),
		next:   1,
	}
}

// withIPv6 adds the IPv6 half of the pool: prefix must be a /48.
func (p *addrPool) withIPv6(prefix netip.Prefix) *addrPool {
	p.base6 = prefix.Masked().Addr()
	p.size = min(p.size, 1<<16)
	return p
}

// service returns the agent's own address in the pool.
func (p *addrPool) service() netip.Addr { return p.at(0, 1) }

// service6 returns the agent's own IPv6 address, or the zero Addr.
func (p *addrPool) service6() netip.Addr { return p.at6(0, 1) }

// leaseBlock reserves block i, for a sandbox adopted after a restart.
func (p *addrPool) leaseBlock(i int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i <= 0 || i >= p.size || p.leased[i] {
		return fmt.Errorf("address block %d: not free", i)
	}
	p.leased[i] = true
	return nil
}

// lease reserves a block and returns its index.
func (p *addrPool) lease() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.size {
		i := p.next
		p.next++
		if p.next >= p.size {
			p.next = 1
		}
		if i != 0 && !p.leased[i] {
			p.leased[i] = true
			return i, nil
		}
	}
	return 0, errPoolExhausted
}

// leases returns how many blocks are leased.
func (p *addrPool) leases() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.leased)
}

func (p *addrPool) release(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.leased, i)
}

// host and sandbox return block i's two addresses as /30 prefixes.
func (p *addrPool) host(i int) netip.Prefix    { return netip.PrefixFrom(p.at(i, 1), 30) }
func (p *addrPool) sandbox(i int) netip.Prefix { return netip.PrefixFrom(p.at(i, 2), 30) }

// host6 and sandbox6 return block i's IPv6 addresses as /64 prefixes,
// or zero prefixes without IPv6.
func (p *addrPool) host6(i int) netip.Prefix    { return prefix64(p.at6(i, 1)) }
func (p *addrPool) sandbox6(i int) netip.Prefix { return prefix64(p.at6(i, 2)) }

func prefix64(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, 64)
}

// at6 returns <base6>:<block>::<off>, or the zero Addr without IPv6.
func (p *addrPool) at6(block, off int) netip.Addr {
	if !p.base6.IsValid() {
		return netip.Addr{}
	}
	b := p.base6.As16()
	b[6], b[7] = byte(block>>8), byte(block)
	b[14], b[15] = byte(off>>8), byte(off)
	return netip.AddrFrom16(b)
}

func (p *addrPool) at(block, off int) netip.Addr {
	b := p.base.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += uint32(block*4 + off)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
