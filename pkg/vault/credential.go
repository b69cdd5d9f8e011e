package vault

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// AddCredential adds c with its secret to vault c.Vault. It sets Version to 1
// and Created and Updated to now, and stores the domains normalised. The
// error wraps ErrInvalid for a bad field or an empty secret, ErrExists if the
// name or the env var is already used in the vault, ErrLimit if the vault
// holds MaxCredentials, and ErrArchived or ErrNotFound for the vault.
func (s *Bolt) AddCredential(c Credential, secret []byte) error {
	c, err := prepareAdd(c, secret)
	if err != nil {
		return err
	}

	err = s.update(func(tx *bolt.Tx) error {
		if err := activeVault(tx, c.Vault); err != nil {
			return err
		}
		if err := checkAdd(tx, c); err != nil {
			return credError(c.Vault, c.Name, err)
		}
		return s.putCredential(tx, c, secret)
	})
	if err != nil {
		return err
	}
	s.changed(ChangeAdd, c.Vault, c.Name)
	return nil
}

// checkAdd enforces the per-vault rules for a new credential: unique name,
// unique env var and the MaxCredentials limit.
func checkAdd(tx *bolt.Tx, c Credential) error {
	creds := tx.Bucket(bucketCreds).Bucket([]byte(c.Vault))
	var existing []Credential
	err := creds.ForEach(func(k, v []byte) error {
		var other Credential
		if err := json.Unmarshal(v, &other); err != nil {
			return fmt.Errorf("decode credential %q: %w", k, err)
		}
		existing = append(existing, other)
		return nil
	})
	if err != nil {
		return err
	}
	return checkNewCredential(c, existing)
}

// checkNewCredential applies the per-vault rules for adding c to a vault
// that holds existing, sorted by name: every engine enforces them with the
// same errors.
func checkNewCredential(c Credential, existing []Credential) error {
	for _, other := range existing {
		if other.Name == c.Name {
			return ErrExists
		}
	}
	for _, other := range existing {
		if other.Env == c.Env {
			return fmt.Errorf("env %s is already used by credential %q: %w", c.Env, other.Name, ErrExists)
		}
	}
	if len(existing) >= MaxCredentials {
		return fmt.Errorf("%w: a vault holds at most %d", ErrLimit, MaxCredentials)
	}
	return nil
}

// prepareAdd checks c and its secret as every engine does before an add,
// and returns c as it is stored: version 1, fresh timestamps, domains
// normalised.
func prepareAdd(c Credential, secret []byte) (Credential, error) {
	if err := c.Validate(); err != nil {
		return c, err
	}
	if len(secret) == 0 {
		return c, credError(c.Vault, c.Name, fmt.Errorf("%w: empty secret", ErrInvalid))
	}
	c.Domains = normalizeDomains(c.Domains)
	c.Version = 1
	c.Created = now()
	c.Updated = c.Created
	return c, nil
}

// RotateCredential replaces a credential's secret, sealed under a fresh data
// key, and returns its metadata with Version incremented. The previous
// secret is erased from the file.
func (s *Bolt) RotateCredential(vault, name string, secret []byte) (Credential, error) {
	if len(secret) == 0 {
		return Credential{}, credError(vault, name, fmt.Errorf("%w: empty secret", ErrInvalid))
	}

	var c Credential
	committed, err := s.purge(func(tx *bolt.Tx) error {
		if err := activeVault(tx, vault); err != nil {
			return err
		}
		var err error
		if c, err = getCredential(tx, vault, name); err != nil {
			return err
		}
		c.Version++
		c.Updated = now()
		return s.putCredential(tx, c, secret)
	})
	if committed {
		s.changed(ChangeRotate, vault, name)
	}
	if err != nil {
		return Credential{}, err
	}
	return c, nil
}

// RemoveCredential deletes a credential, metadata and secret, erasing the
// secret from the file. Archived vaults accept no changes (ErrArchived).
func (s *Bolt) RemoveCredential(vault, name string) error {
	committed, err := s.purge(func(tx *bolt.Tx) error {
		if err := activeVault(tx, vault); err != nil {
			return err
		}
		if _, err := getCredential(tx, vault, name); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCreds).Bucket([]byte(vault)).Delete([]byte(name)); err != nil {
			return credError(vault, name, err)
		}
		if err := tx.Bucket(bucketSecrets).Bucket([]byte(vault)).Delete([]byte(name)); err != nil {
			return credError(vault, name, err)
		}
		return nil
	})
	if committed {
		s.changed(ChangeRemove, vault, name)
	}
	return err
}

// Credentials lists a vault's credentials sorted by name. For an archived
// vault it still lists the metadata; the secrets are gone.
func (s *Bolt) Credentials(vault string) ([]Credential, error) {
	creds := []Credential{}
	err := s.view(func(tx *bolt.Tx) error {
		if _, err := getVault(tx, vault); err != nil {
			return err
		}
		return tx.Bucket(bucketCreds).Bucket([]byte(vault)).ForEach(func(k, v []byte) error {
			var c Credential
			if err := json.Unmarshal(v, &c); err != nil {
				return credError(vault, string(k), fmt.Errorf("decode metadata: %w", err))
			}
			creds = append(creds, c)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return creds, nil
}

// Credential returns one credential's metadata.
func (s *Bolt) Credential(vault, name string) (Credential, error) {
	var c Credential
	err := s.view(func(tx *bolt.Tx) error {
		if _, err := getVault(tx, vault); err != nil {
			return err
		}
		var err error
		c, err = getCredential(tx, vault, name)
		return err
	})
	return c, err
}

// Secret decrypts a credential's current secret and returns it with the
// metadata it belongs to. The error wraps ErrArchived if the vault is
// archived, ErrNotFound if the vault or credential does not exist, and
// ErrDecrypt if the sealed record fails authentication.
func (s *Bolt) Secret(vault, name string) (Secret, Credential, error) {
	var (
		secret Secret
		c      Credential
	)
	err := s.view(func(tx *bolt.Tx) error {
		if err := activeVault(tx, vault); err != nil {
			return err
		}
		var err error
		if c, err = getCredential(tx, vault, name); err != nil {
			return err
		}
		record := tx.Bucket(bucketSecrets).Bucket([]byte(vault)).Get([]byte(name))
		secret, err = s.keys.openRecord(vault, name, c.Version, record)
		return err
	})
	if err != nil {
		return Secret{}, Credential{}, err
	}
	return secret, c, nil
}

// openRecord decrypts record, the sealed secret (nil if there is none) that
// the store keeps for credential name of vault at version, with the errors
// every engine's Secret gives. The names are those the record was looked up
// by, not the ones its metadata claims, so a record and metadata copied
// together to another credential's place still fail authentication.
func (k keyring) openRecord(vault, name string, version uint64, record []byte) (Secret, error) {
	if record == nil {
		return Secret{}, credError(vault, name, fmt.Errorf("sealed secret: %w", ErrNotFound))
	}
	plain, err := k.openSecret(vault, name, version, record)
	if err != nil {
		return Secret{}, credError(vault, name, err)
	}
	return Secret{b: plain}, nil // openSecret returned a fresh slice
}

// getCredential reads a credential's metadata from an existing vault.
func getCredential(tx *bolt.Tx, vault, name string) (Credential, error) {
	var c Credential
	creds := tx.Bucket(bucketCreds).Bucket([]byte(vault))
	if creds == nil {
		return c, vaultError(vault, ErrNotFound)
	}
	raw := creds.Get([]byte(name))
	if raw == nil {
		return c, credError(vault, name, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, credError(vault, name, fmt.Errorf("decode metadata: %w", err))
	}
	return c, nil
}

// putCredential seals secret for c's current version and stores metadata
// and sealed record side by side in the same transaction.
func (s *Bolt) putCredential(tx *bolt.Tx, c Credential, secret []byte) error {
	record, err := s.keys.sealSecret(c.Vault, c.Name, c.Version, secret)
	if err != nil {
		return credError(c.Vault, c.Name, err)
	}
	if err := putJSON(tx.Bucket(bucketCreds).Bucket([]byte(c.Vault)), c.Name, c); err != nil {
		return credError(c.Vault, c.Name, err)
	}
	secrets, err := tx.Bucket(bucketSecrets).CreateBucketIfNotExists([]byte(c.Vault))
	if err != nil {
		return credError(c.Vault, c.Name, err)
	}
	if err := secrets.Put([]byte(c.Name), record); err != nil {
		return credError(c.Vault, c.Name, fmt.Errorf("store sealed secret: %w", err))
	}
	return nil
}
