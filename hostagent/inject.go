//go:build linux

package hostagent

import (
	"strings"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/vault"
)

// credentials resolves placeholders for the proxy against the sandbox
// registry and the credential cache, on every request: a rotation, removal
// or archive made through the API is seen by the next request.
type credentials struct {
	reg   *registry
	cache *credCache
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
	pb, err := c.binding(id, b)
	if err != nil {
		return proxy.Binding{}, &proxy.CredentialError{Vault: b.Vault, Credential: b.Cred, Err: err}
	}
	return pb, nil
}

// binding returns the credential behind placeholder id as it is now, with
// the placeholder the sandbox was given for it.
func (c *credentials) binding(id string, b binding) (proxy.Binding, error) {
	meta, _, err := c.cache.get(b.Vault, b.Cred)
	if err != nil {
		return proxy.Binding{}, err
	}
	pb := bindingOf(meta)
	pb.Placeholder = meta.Prefix + id
	return pb, nil
}

func (c *credentials) Secret(b proxy.Binding) (*proxy.Secret, error) {
	_, sec, err := c.cache.get(b.Vault, b.Credential)
	if err != nil {
		return nil, &proxy.CredentialError{Vault: b.Vault, Credential: b.Credential, Err: err}
	}
	return sec, nil
}

// Templates returns the sandbox's credentials with a header template that
// are approved for host. The domains checked first are those the
// credential had when the sandbox was created, so that a credential
// removed or archived since still counts as used here: the request is
// refused with the reason, instead of going out without it.
func (c *credentials) Templates(psb proxy.Sandbox, host string) ([]proxy.Binding, error) {
	sb := psb.(*sandbox)
	var out []proxy.Binding
	for _, t := range sb.templated {
		if !domain.MatchAny(t.Domains, host) {
			continue
		}
		meta, _, err := c.cache.get(t.Vault, t.Cred)
		if err != nil {
			return nil, &proxy.CredentialError{Vault: t.Vault, Credential: t.Cred, Err: err}
		}
		if domain.MatchAny(meta.Domains, host) {
			pb := bindingOf(meta)
			pb.Placeholder = sb.placeholderOf(t.Vault, t.Cred)
			out = append(out, pb)
		}
	}
	return out, nil
}

// Approved returns the sandbox's live credentials approved for host now.
// A credential that can no longer be read (archived, removed) is left
// out: its secret is gone from the store and cannot be sent any more.
func (c *credentials) Approved(psb proxy.Sandbox, host string) []proxy.Binding {
	sb := psb.(*sandbox)
	var out []proxy.Binding
	for id, b := range sb.bindings {
		if pb, err := c.binding(id, b); err == nil && domain.MatchAny(pb.Domains, host) {
			out = append(out, pb)
		}
	}
	return out
}

func (c *credentials) Retired(b proxy.Binding) []*proxy.Secret {
	return c.cache.retiredSecrets(b.Vault, b.Credential)
}

func bindingOf(c vault.Credential) proxy.Binding {
	return proxy.Binding{
		Vault: c.Vault, Credential: c.Name, Domains: c.Domains,
		Prefix: c.Prefix, Query: c.Query, Header: c.Header,
	}
}

// placeholderOf returns the sandbox's placeholder for a credential, prefix
// included, or "" if it has none.
func (s *sandbox) placeholderOf(vaultName, cred string) string {
	for id, b := range s.bindings {
		if b.Vault == vaultName && b.Cred == cred {
			for _, kv := range s.env {
				if strings.HasSuffix(kv, id) {
					_, v, _ := strings.Cut(kv, "=")
					return v
				}
			}
			return id
		}
	}
	return ""
}
