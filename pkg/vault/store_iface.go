package vault

// Store is what keygate keeps its vaults in. The embedded engine (Bolt, one
// file in the state directory) is the default; a distributed engine for
// fleets of hosts implements the same interface, and the shared test suite
// in package storetest holds both to the same contract.
//
// Every method is safe for concurrent use. Errors wrap the sentinels of this
// package (ErrNotFound, ErrExists, ErrArchived, ErrLimit, ErrInvalid,
// ErrDecrypt, ErrUnavailable) so callers can map them to outcomes with
// errors.Is. No method returns a secret except Secret, and no error ever
// contains one.
type Store interface {
	// CreateVault creates an empty vault; ErrExists if the name is taken,
	// also by an archived vault.
	CreateVault(name string) error
	// Vaults lists every vault, archived ones included, sorted by name.
	Vaults() ([]Info, error)
	// Vault describes one vault.
	Vault(name string) (Info, error)
	// ArchiveVault purges every secret of the vault unrecoverably and marks
	// it archived; its metadata stays. ErrArchived if it already is.
	ArchiveVault(name string) error

	// AddCredential adds c with its secret; see Bolt.AddCredential for the
	// rules every engine enforces.
	AddCredential(c Credential, secret []byte) error
	// RotateCredential replaces the secret and returns the metadata with
	// Version incremented. The old secret is purged.
	RotateCredential(vault, name string, secret []byte) (Credential, error)
	// RemoveCredential deletes the credential and purges its secret.
	RemoveCredential(vault, name string) error
	// Credentials lists a vault's credentials, sorted by name.
	Credentials(vault string) ([]Credential, error)
	// Credential returns one credential's metadata.
	Credential(vault, name string) (Credential, error)
	// Secret decrypts the current secret of a credential of a live vault.
	Secret(vault, name string) (Secret, Credential, error)

	// Watch registers fn to be called with every change the store commits
	// or learns of: its own writes and, for a shared engine, those of other
	// hosts, so a cache of secrets can drop an entry the moment it goes
	// stale. For a change made through this Store, fn has been called by the
	// time the method that made it returns. Calls never overlap and must
	// not block; fn may read the store, not change it. cancel stops
	// further calls.
	Watch(fn func(Change)) (cancel func())

	// Engine names the engine ("bolt", "etcd") for status output.
	Engine() string
	// Close releases the store. Later calls fail.
	Close() error
}
