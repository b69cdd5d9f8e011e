package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/internal/fsutil"
)

// Bucket layout. Metadata and sealed material live in separate top-level
// buckets, so listing and reading metadata never loads a sealed record, and
// archiving a vault drops all of its sealed material with one bucket.
//
//	meta          key-check → sealed under the master key (crypto.go)
//	              purge-pending → present while a purge has not been compacted
//	vaults        vault name → JSON vaultRecord
//	credentials   vault name → bucket: credential name → JSON Credential
//	secrets       vault name → bucket: credential name → sealed record
var (
	bucketMeta      = []byte("meta")
	bucketVaults    = []byte("vaults")
	bucketCreds     = []byte("credentials")
	bucketSecrets   = []byte("secrets")
	keyKeyCheck     = []byte("key-check")
	keyPurgePending = []byte("purge-pending")
)

// openTimeout bounds the wait for bbolt's file lock, so a second agent on the
// same state directory fails clearly instead of hanging.
const openTimeout = time.Second

// errClosed is returned after Close, or when a failed compaction could not
// reopen the database file.
var errClosed = errors.New("store is closed")

// vaultRecord is what the vaults bucket holds; the name is the key.
type vaultRecord struct {
	Created    time.Time  `json:"created"`
	ArchivedAt *time.Time `json:"archived_at,omitempty"` // nil while active
}

// Bolt is the embedded engine: one bbolt file. Every mutation is a single
// bbolt transaction, fsynced on commit. A Bolt is safe for concurrent use.
type Bolt struct {
	path string
	keys keyring

	mu sync.RWMutex // guards db; compaction closes and replaces it
	db *bolt.DB     // nil after Close

	watch watchers     // functions registered with Watch
	rev   atomic.Int64 // Revision of the last change reported to them
}

// OpenBolt opens the embedded store at path, creating the file with mode
// 0600 if absent. The master key must be 32 bytes and, for an existing
// store, the key the store was created with; otherwise the error wraps
// ErrDecrypt. A purge left unfinished by a crash is completed before
// OpenBolt returns.
func OpenBolt(path string, masterKey []byte) (*Bolt, error) {
	keys, err := newKeyring(masterKey)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Bolt{path: path, keys: keys}
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

var _ Store = (*Bolt)(nil)

// Engine names the embedded engine in status output.
func (s *Bolt) Engine() string { return "bolt" }

// Watch registers fn to be called once for every change committed through
// s, after the commit and before the method that made the change returns,
// from the goroutine that made it. Calls never overlap; changes made by
// concurrent writers may reach fn in either order, each with its own
// Revision. A Bolt file has one writer, this process, so nothing else can
// change it behind fn's back.
func (s *Bolt) Watch(fn func(Change)) (cancel func()) {
	return s.watch.add(fn)
}

// changed reports a committed change to the watchers.
func (s *Bolt) changed(kind ChangeKind, vault, cred string) {
	s.watch.notify(Change{Kind: kind, Vault: vault, Credential: cred, Revision: s.rev.Add(1)})
}

func (s *Bolt) open() error {
	// A compaction cut short by a crash leaves its copy behind. The copy
	// holds nothing the live file lacks, so it is simply dropped.
	if err := os.Remove(s.compactPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_, statErr := os.Stat(s.path)
	db, err := openDB(s.path)
	if err != nil {
		return err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		err = fsutil.SyncDir(filepath.Dir(s.path))
	}

	pending := false
	if err == nil {
		pending, err = initDB(db, s.keys)
	}
	if err != nil {
		return errors.Join(err, db.Close())
	}

	s.db = db
	if !pending {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.compactLocked(); err != nil {
		return errors.Join(fmt.Errorf("finish interrupted purge: %w", err), s.closeLocked())
	}
	return nil
}

func openDB(path string) (*bolt.DB, error) {
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
}

// initDB creates the buckets and key check of a new store, or verifies the
// key check of an existing one. It reports whether a purge is pending.
func initDB(db *bolt.DB, keys keyring) (pending bool, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketVaults, bucketCreds, bucketSecrets} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}

		meta := tx.Bucket(bucketMeta)
		pending = meta.Get(keyPurgePending) != nil
		if check := meta.Get(keyKeyCheck); check != nil {
			if err := keys.verifyKeyCheck(check); err != nil {
				return fmt.Errorf("master key does not match this store: %w", err)
			}
			return nil
		}
		check, err := keys.sealKeyCheck()
		if err != nil {
			return err
		}
		return meta.Put(keyKeyCheck, check)
	})
	return pending, err
}

// Close closes the database file. Later calls on s fail; Close itself may be
// called again.
func (s *Bolt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *Bolt) closeLocked() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// view runs fn in a read-only transaction.
func (s *Bolt) view(fn func(*bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errClosed
	}
	return s.db.View(fn)
}

// update runs fn in a read-write transaction that commits only if fn
// returns nil.
func (s *Bolt) update(fn func(*bolt.Tx) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return errClosed
	}
	return s.db.Update(fn)
}

// purge is update for changes that drop secret material. The same
// transaction marks a purge as pending, and the file is then compacted so
// the dropped bytes leave it; if compaction fails or the process dies first,
// the next Open finishes it. The change itself is committed either way:
// committed reports whether it was, whatever err says.
func (s *Bolt) purge(fn func(*bolt.Tx) error) (committed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return false, errClosed
	}

	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyPurgePending, []byte{1})
	})
	if err != nil {
		return false, err
	}
	if err := s.compactLocked(); err != nil {
		return true, fmt.Errorf("change saved, but erasing old data failed (retried on next open): %w", err)
	}
	return true, nil
}

// now returns the current time in UTC without its monotonic reading, so a
// value returned to a caller equals the one read back from the store.
func now() time.Time {
	return time.Now().UTC().Round(0)
}
