package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/internal/fsutil"
)

// Why compaction: bbolt never overwrites a page in place. A deleted or
// replaced value stays in the file, on a page the freelist marks reusable,
// until some later write happens to reuse that page. Dropped ciphertext and
// wrapped keys would therefore remain readable in the raw file. Copying the
// live keys into a fresh file and renaming it over the old one leaves no
// such pages behind.

// compactPath is where the fresh copy is built, next to the live file so
// the rename is atomic.
func (s *Bolt) compactPath() string {
	return s.path + ".compact"
}

// compactLocked rewrites the database into a fresh file, clears the
// purge-pending mark in it, fsyncs it, renames it over the live file and
// reopens. The caller holds s.mu for writing. If the swap fails after the
// old database was closed, s.db is reopened from whichever file is at
// s.path, or left nil (errClosed) if even that fails.
func (s *Bolt) compactLocked() error {
	tmp := s.compactPath()
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale copy: %w", err)
	}
	if err := compactInto(tmp, s.db); err != nil {
		_ = os.Remove(tmp) // holds only live data; the error below matters more
		return fmt.Errorf("compact: %w", err)
	}

	// Keep a handle on the old file so its contents can be overwritten once
	// it is no longer the live file.
	old, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("open old file: %w", err)
	}
	defer old.Close()

	swapErr := s.swapLocked(tmp)
	db, openErr := openDB(s.path)
	s.db = db
	if err := errors.Join(swapErr, openErr); err != nil {
		return err
	}
	scrub(old)
	return nil
}

// compactInto copies every live key of src into a new database at path.
func compactInto(path string, src *bolt.DB) error {
	dst, err := openDB(path)
	if err != nil {
		return err
	}
	err = bolt.Compact(dst, src, 0)
	if err == nil {
		err = dst.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Delete(keyPurgePending)
		})
	}
	if err == nil {
		err = dst.Sync()
	}
	return errors.Join(err, dst.Close())
}

// swapLocked closes the live database and renames the compacted copy over
// it. The caller reopens s.path whatever the outcome.
func (s *Bolt) swapLocked(tmp string) error {
	err := s.db.Close()
	s.db = nil
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("close before swap: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("swap in compacted file: %w", err)
	}
	return fsutil.SyncDir(filepath.Dir(s.path))
}

// scrub overwrites a replaced, already unlinked file with zeros so its old
// blocks do not keep the purged bytes on disk. It is best effort and its
// errors are ignored: the file is no longer reachable by name, and on
// copy-on-write filesystems or flash the overwrite may land on new blocks
// anyway, so a failure here must not fail a purge that already took effect.
func scrub(f *os.File) {
	fi, err := f.Stat()
	if err != nil {
		return
	}
	zeros := make([]byte, 64<<10)
	for off := int64(0); off < fi.Size(); off += int64(len(zeros)) {
		n := min(int64(len(zeros)), fi.Size()-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return
		}
	}
	_ = f.Sync()
}
