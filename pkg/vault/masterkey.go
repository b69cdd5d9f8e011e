package vault

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/internal/fsutil"
)

// LoadOrCreateMasterKey reads a 32-byte master key from path, or creates it
// (random, mode 0600, O_EXCL, fsync file and dir) when absent. It refuses a key
// file that is group/world readable or not exactly 32 bytes.
//
// The parent directory must exist. A key file is never repaired or replaced:
// losing the key loses every secret sealed under it, so a damaged file is an
// error for the operator to resolve.
func LoadOrCreateMasterKey(path string) ([]byte, error) {
	key, err := loadMasterKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}

	key, err = createMasterKey(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and our create.
		return loadMasterKey(path)
	}
	return key, err
}

// loadMasterKey reads an existing key file; a missing file wraps
// fs.ErrNotExist.
func loadMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key %s: mode %#o gives group or others access; want 0600", path, perm)
	}

	// Read one byte more than a key so an oversized file is caught even if
	// it grew after Stat.
	key, err := io.ReadAll(io.LimitReader(f, keySize+1))
	if err != nil {
		return nil, fmt.Errorf("master key %s: %w", path, err)
	}
	if len(key) != keySize {
		clear(key)
		return nil, fmt.Errorf("master key %s: %w: want exactly %d bytes", path, ErrInvalid, keySize)
	}
	return key, nil
}

// createMasterKey writes a new random key with O_EXCL, so it never replaces
// an existing key, and makes both the file and its directory entry durable
// before returning the key for use.
func createMasterKey(path string) ([]byte, error) {
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fsutil.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		// Nothing was sealed under this key yet, so removing it is safe.
		_ = os.Remove(path)
		return nil, fmt.Errorf("create master key %s: %w", path, err)
	}
	return key, nil
}
