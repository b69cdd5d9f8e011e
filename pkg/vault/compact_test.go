package vault

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// dirContains reports whether any file in dir holds needle.
func dirContains(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, needle) {
			return true
		}
	}
	return false
}

// recordParts splits a sealed record into the byte strings a purge must
// erase: the wrapped data key and the sealed secret.
func recordParts(rec []byte) map[string][]byte {
	return map[string][]byte{
		"wrapped key":   rec[1 : 1+wrappedKeyLen],
		"sealed secret": rec[1+wrappedKeyLen:],
	}
}

func TestPurgeLeavesNoSealedBytes(t *testing.T) {
	tests := []struct {
		name  string
		purge func(s *Bolt) error
	}{
		{"archive vault", func(s *Bolt) error { return s.ArchiveVault("prod") }},
		{"remove credential", func(s *Bolt) error { return s.RemoveCredential("prod", "openai") }},
		{"rotate credential", func(s *Bolt) error {
			_, err := s.RotateCredential("prod", "openai", []byte(secretB))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, path, _ := openTestStore(t)
			dir := filepath.Dir(path)
			mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
			mustAdd(t, s, testCredential("keep", "github", "GH_TOKEN"), secretB)
			gone := sealedRecord(t, s, "prod", "openai")
			kept := sealedRecord(t, s, "keep", "github")

			// Positive control: before the purge the scan finds the bytes.
			for part, b := range recordParts(gone) {
				if !dirContains(t, dir, b) {
					t.Fatalf("%s not found in the file before the purge; the scan is broken", part)
				}
			}

			if err := tt.purge(s); err != nil {
				t.Fatal(err)
			}
			for part, b := range recordParts(gone) {
				if dirContains(t, dir, b) {
					t.Errorf("purged %s still present in %s", part, dir)
				}
			}
			for part, b := range recordParts(kept) {
				if !dirContains(t, dir, b) {
					t.Errorf("%s of an untouched credential lost", part)
				}
			}
			if dirContains(t, dir, []byte(secretA)) || dirContains(t, dir, []byte(secretB)) {
				t.Error("a plaintext secret is in the state directory")
			}
			if got, _, err := s.Secret("keep", "github"); err != nil || string(got.Bytes()) != secretB {
				t.Errorf("store unusable after purge: %v", err)
			}
		})
	}
}

// TestOpenFinishesPendingPurge simulates a crash between a purge's commit
// and its compaction: the next Open must compact before returning.
func TestOpenFinishesPendingPurge(t *testing.T) {
	s, path, key := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	gone := sealedRecord(t, s, "prod", "openai")
	err := s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSecrets).Bucket([]byte("prod")).Delete([]byte("openai")); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyPurgePending, []byte{1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for part, b := range recordParts(gone) {
		if !dirContains(t, filepath.Dir(path), b) {
			t.Fatalf("%s not in the file before reopen; the simulation is broken", part)
		}
	}
	// A crash mid-compaction would also leave the copy behind.
	if err := os.WriteFile(path+".compact", []byte("stale copy"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenBolt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for part, b := range recordParts(gone) {
		if dirContains(t, filepath.Dir(path), b) {
			t.Errorf("%s still present after reopen", part)
		}
	}
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Errorf("stale compaction copy not removed: %v", err)
	}
	err = s2.view(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyPurgePending) != nil {
			t.Error("purge still marked pending after compaction")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
