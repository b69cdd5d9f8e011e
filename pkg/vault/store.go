package vault

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/pkg/domain"
)

// CreateVault creates an empty vault. The error wraps ErrExists if the name
// is taken, also by an archived vault.
func (s *Bolt) CreateVault(name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("vault %w", err)
	}
	err := s.update(func(tx *bolt.Tx) error {
		vaults := tx.Bucket(bucketVaults)
		if vaults.Get([]byte(name)) != nil {
			return vaultError(name, ErrExists)
		}
		if err := putJSON(vaults, name, vaultRecord{Created: now()}); err != nil {
			return vaultError(name, err)
		}
		if _, err := tx.Bucket(bucketCreds).CreateBucket([]byte(name)); err != nil {
			return vaultError(name, err)
		}
		if _, err := tx.Bucket(bucketSecrets).CreateBucket([]byte(name)); err != nil {
			return vaultError(name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.changed(ChangeCreate, name, "")
	return nil
}

// Vaults lists every vault, archived ones included, sorted by name.
func (s *Bolt) Vaults() ([]Info, error) {
	infos := []Info{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVaults).ForEach(func(k, v []byte) error {
			info, err := vaultInfo(tx, string(k), v)
			infos = append(infos, info)
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// Vault describes one vault.
func (s *Bolt) Vault(name string) (Info, error) {
	var info Info
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketVaults).Get([]byte(name))
		if v == nil {
			return vaultError(name, ErrNotFound)
		}
		var err error
		info, err = vaultInfo(tx, name, v)
		return err
	})
	return info, err
}

// ArchiveVault archives a vault: its sealed secrets and wrapped data keys
// are erased from the file, while its name and credential metadata remain
// for listing and audit. The error wraps ErrArchived if it already is.
func (s *Bolt) ArchiveVault(name string) error {
	committed, err := s.purge(func(tx *bolt.Tx) error {
		rec, err := getVault(tx, name)
		if err != nil {
			return err
		}
		if rec.ArchivedAt != nil {
			return vaultError(name, ErrArchived)
		}

		t := now()
		rec.ArchivedAt = &t
		if err := putJSON(tx.Bucket(bucketVaults), name, rec); err != nil {
			return vaultError(name, err)
		}
		secrets := tx.Bucket(bucketSecrets)
		if secrets.Bucket([]byte(name)) == nil {
			return nil
		}
		if err := secrets.DeleteBucket([]byte(name)); err != nil {
			return vaultError(name, fmt.Errorf("delete secrets: %w", err))
		}
		return nil
	})
	if committed {
		s.changed(ChangeArchive, name, "")
	}
	return err
}

// vaultInfo builds an Info from a vault's stored record.
func vaultInfo(tx *bolt.Tx, name string, raw []byte) (Info, error) {
	var rec vaultRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Info{}, vaultError(name, fmt.Errorf("decode record: %w", err))
	}
	info := Info{Name: name, Created: rec.Created, ArchivedAt: rec.ArchivedAt}
	info.Archived = rec.ArchivedAt != nil
	if b := tx.Bucket(bucketCreds).Bucket([]byte(name)); b != nil {
		info.Credentials = b.Stats().KeyN
	}
	return info, nil
}

// getVault reads a vault's record; the error wraps ErrNotFound if absent.
func getVault(tx *bolt.Tx, name string) (vaultRecord, error) {
	var rec vaultRecord
	raw := tx.Bucket(bucketVaults).Get([]byte(name))
	if raw == nil {
		return rec, vaultError(name, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return rec, vaultError(name, fmt.Errorf("decode record: %w", err))
	}
	return rec, nil
}

// activeVault checks that a vault exists and is not archived.
func activeVault(tx *bolt.Tx, name string) error {
	rec, err := getVault(tx, name)
	if err != nil {
		return err
	}
	if rec.ArchivedAt != nil {
		return vaultError(name, ErrArchived)
	}
	return nil
}

// putJSON stores v under key in b.
func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	if err := b.Put([]byte(key), raw); err != nil {
		return fmt.Errorf("store record: %w", err)
	}
	return nil
}

// normalizeDomains returns a copy of patterns in the canonical form
// pkg/domain compares in (lower case, no trailing dot).
func normalizeDomains(patterns []string) []string {
	out := make([]string, len(patterns))
	for i, p := range patterns {
		out[i] = domain.Normalize(p)
	}
	return out
}
