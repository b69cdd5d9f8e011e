//go:build linux

package hostagent

import (
	"net/netip"

	"github.com/keygate/keygate/pkg/resolver"
)

// resolverView adapts the registry to the resolver's Sandboxes interface.
type resolverView struct{ reg *registry }

var _ resolver.Sandboxes = resolverView{}

// BySource returns the DNS policy of the sandbox at src.
func (v resolverView) BySource(src netip.Addr) (resolver.Policy, bool) {
	sb, ok := v.reg.bySource(src)
	if !ok {
		return resolver.Policy{}, false
	}
	return resolver.Policy{ID: sb.id, Allowed: sb.domains, Open: sb.open}, true
}
