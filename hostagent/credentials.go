//go:build linux

package hostagent

import (
	"net/netip"
)

// resolverView adapts the registry to the resolver's Sandboxes interface.
type resolverView struct{ reg *registry }

func (v resolverView) BySource(src netip.Addr) (string, []string, bool) {
	sb, ok := v.reg.bySource(src)
	if !ok {
		return "", nil, false
	}
	return sb.id, sb.domains, true
}
