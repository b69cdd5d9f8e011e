//go:build linux

package hostagent

import (
	"fmt"
	"net/netip"

	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/vault"
)

// credentials resolves placeholders for the proxy against the registry and
// the store, on every request: a rotation, removal or archive is seen by
// the next request.
type credentials struct {
	reg   *registry
	store *vault.Store
}

var _ proxy.Credentials = (*credentials)(nil)

func (c *credentials) Lookup(psb proxy.Sandbox, id string) (proxy.Binding, error) {
	sb := psb.(*sandbox)
	b, ok := sb.bindings[id]
	if !ok {
		if _, foreign := c.reg.placeholderOwner(id); foreign {
			return proxy.Binding{}, proxy.ErrForeignPlaceholder
		}
		return proxy.Binding{}, proxy.ErrUnknownPlaceholder
	}
	cred, err := c.store.Credential(b.vault, b.cred)
	if err != nil {
		return proxy.Binding{}, err
	}
	return proxy.Binding{Vault: b.vault, Credential: b.cred, Domains: cred.Domains}, nil
}

func (c *credentials) Secret(b proxy.Binding) (vault.Secret, error) {
	sec, _, err := c.store.Secret(b.Vault, b.Credential)
	if err != nil {
		return vault.Secret{}, fmt.Errorf("credential %s/%s: %w", b.Vault, b.Credential, err)
	}
	return sec, nil
}

// resolverView adapts the registry to the resolver's Sandboxes interface.
type resolverView struct{ reg *registry }

func (v resolverView) BySource(src netip.Addr) (string, []string, bool) {
	sb, ok := v.reg.bySource(src)
	if !ok {
		return "", nil, false
	}
	return sb.id, sb.domains, true
}
