//go:build linux

package hostagent

import (
	"net/netip"

	"github.com/keygate/keygate/pkg/resolver"
)

// resolverView adapts the registry to the resolver's Sandboxes interface.
type resolverView struct{ reg *registry }

var _ resolver.Sandboxes = resolverView{}

// BySource returns the allowlist policy of the sandbox at src.
//
// TODO: every sandbox is in allowlist mode until sandboxes carry a mode of
// their own; open mode (resolver.Policy.Open) cannot be chosen yet.
func (v resolverView) BySource(src netip.Addr) (resolver.Policy, bool) {
	sb, ok := v.reg.bySource(src)
	if !ok {
		return resolver.Policy{}, false
	}
	return resolver.Policy{ID: sb.id, Allowed: sb.domains}, true
}
