package vault

import (
	"slices"
	"strings"
)

// Reads answer from the view under s.mu, with the same errors as Bolt.

// readView runs fn on the view, or fails once the store is closed.
func (s *Etcd) readView(fn func(v *etcdView) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	return fn(s.view)
}

// Vaults lists every vault, archived ones included, sorted by name.
func (s *Etcd) Vaults() ([]Info, error) {
	infos := []Info{}
	err := s.readView(func(v *etcdView) error {
		for name, rec := range v.vaults {
			infos = append(infos, v.info(name, rec))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

// Vault describes one vault.
func (s *Etcd) Vault(name string) (Info, error) {
	var info Info
	err := s.readView(func(v *etcdView) error {
		rec, ok := v.vaults[name]
		if !ok {
			return vaultError(name, ErrNotFound)
		}
		info = v.info(name, rec)
		return nil
	})
	return info, err
}

// Credentials lists a vault's credentials sorted by name, also for an
// archived vault.
func (s *Etcd) Credentials(vault string) ([]Credential, error) {
	creds := []Credential{}
	err := s.readView(func(v *etcdView) error {
		if _, ok := v.vaults[vault]; !ok {
			return vaultError(vault, ErrNotFound)
		}
		for _, c := range v.creds[vault] {
			creds = append(creds, c.clone())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(creds, func(a, b Credential) int { return strings.Compare(a.Name, b.Name) })
	return creds, nil
}

// Credential returns one credential's metadata.
func (s *Etcd) Credential(vault, name string) (Credential, error) {
	var c Credential
	err := s.readView(func(v *etcdView) error {
		var err error
		c, err = v.credential(vault, name)
		return err
	})
	return c, err
}

// Secret decrypts a credential's current secret from the view. Beyond
// Bolt's errors, it fails with ErrUnavailable when the view was last
// confirmed current longer than the grace period ago: a host cut off from
// the cluster cannot know whether the credential was rotated, removed or
// archived since, so it stops vouching for it.
func (s *Etcd) Secret(vault, name string) (Secret, Credential, error) {
	var (
		secret Secret
		c      Credential
	)
	err := s.readView(func(v *etcdView) error {
		if err := s.fresh(); err != nil {
			return credError(vault, name, err)
		}
		rec, ok := v.vaults[vault]
		if !ok {
			return vaultError(vault, ErrNotFound)
		}
		if rec.ArchivedAt != nil {
			return vaultError(vault, ErrArchived)
		}
		var err error
		if c, err = v.credential(vault, name); err != nil {
			return err
		}
		secret, err = s.keys.openRecord(vault, name, c.Version, v.secrets[vault][name])
		return err
	})
	if err != nil {
		return Secret{}, Credential{}, err
	}
	return secret, c, nil
}

// info builds a vault's Info from the view.
func (v *etcdView) info(name string, rec vaultRecord) Info {
	info := Info{Name: name, Created: rec.Created, Credentials: len(v.creds[name])}
	if rec.ArchivedAt != nil {
		t := *rec.ArchivedAt // the caller's own copy
		info.Archived, info.ArchivedAt = true, &t
	}
	return info
}

// credential returns a copy of one credential's metadata from the view.
func (v *etcdView) credential(vault, name string) (Credential, error) {
	if _, ok := v.vaults[vault]; !ok {
		return Credential{}, vaultError(vault, ErrNotFound)
	}
	c, ok := v.creds[vault][name]
	if !ok {
		return Credential{}, credError(vault, name, ErrNotFound)
	}
	return c.clone(), nil
}

// clone returns c with a Domains slice of its own, so a caller cannot
// change the view through it.
func (c Credential) clone() Credential {
	c.Domains = slices.Clone(c.Domains)
	return c
}
