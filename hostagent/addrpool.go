package hostagent

import (
	"errors"
	"net/netip"
	"sync"
)

// errPoolExhausted is returned when every sandbox address is leased.
var errPoolExhausted = errors.New("no free sandbox address")

// addrPool leases /30 blocks of the sandbox CIDR: block i holds the host
// end at .4i+1 and the sandbox at .4i+2. Block 0 is reserved: its first
// address is the agent's service address (proxy and resolver).
type addrPool struct {
	base netip.Addr
	size int // number of blocks

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

// service returns the agent's own address in the pool.
func (p *addrPool) service() netip.Addr { return p.at(0, 1) }

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

func (p *addrPool) release(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.leased, i)
}

// host and sandbox return block i's two addresses as /30 prefixes.
func (p *addrPool) host(i int) netip.Prefix    { return netip.PrefixFrom(p.at(i, 1), 30) }
func (p *addrPool) sandbox(i int) netip.Prefix { return netip.PrefixFrom(p.at(i, 2), 30) }

func (p *addrPool) at(block, off int) netip.Addr {
	b := p.base.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += uint32(block*4 + off)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
