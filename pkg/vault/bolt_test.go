package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Test secrets are distinctive so a leak into any output is easy to find.
const (
	secretA = "sk-test-ALPHA-5f1c9e2b7d"
	secretB = "sk-test-BRAVO-0a8e3c6f41"
)

// openTestStore opens a fresh store in a temporary directory, closed at the
// end of the test.
func openTestStore(t *testing.T) (s *Bolt, path string, key []byte) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "vault.db")
	key = randomKey(t)
	s, err := OpenBolt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path, key
}

func testCredential(vault, name, env string) Credential {
	return Credential{Vault: vault, Name: name, Env: env, Domains: []string{"api.example.com"}}
}

// mustAdd creates the vault if needed and adds a credential.
func mustAdd(t *testing.T, s *Bolt, c Credential, secret string) {
	t.Helper()
	if err := s.CreateVault(c.Vault); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := s.AddCredential(c, []byte(secret)); err != nil {
		t.Fatal(err)
	}
}

// sealedRecord is the test-only accessor for a credential's raw sealed
// record, or nil if there is none.
func sealedRecord(t *testing.T, s *Bolt, vault, name string) []byte {
	t.Helper()
	var rec []byte
	err := s.view(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSecrets).Bucket([]byte(vault)); b != nil {
			rec = bytes.Clone(b.Get([]byte(name)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// putSealedRecord overwrites a credential's sealed record, as an attacker
// with write access to the file could.
func putSealedRecord(t *testing.T, s *Bolt, vault, name string, rec []byte) {
	t.Helper()
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSecrets).Bucket([]byte(vault)).Put([]byte(name), rec)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkNoLeak fails if err's text holds any test secret.
func checkNoLeak(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, secret := range []string{secretA, secretB, cryptoTestSecret, formatTestSecret} {
		if strings.Contains(err.Error(), secret) {
			t.Fatal("error message contains a secret value (message withheld)")
		}
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	_, path, _ := openTestStore(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store file mode %#o, want 0600", fi.Mode().Perm())
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, path, key := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenBolt(path, key)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, c, err := s2.Secret("prod", "openai")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Bytes()) != secretA || c.Version != 1 {
		t.Fatalf("after reopen: version %d, secret matches = %v", c.Version, string(got.Bytes()) == secretA)
	}
}

func TestOpenWrongMasterKey(t *testing.T) {
	s, path, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenBolt(path, randomKey(t))
	if err == nil {
		s2.Close()
		t.Fatal("Open with the wrong master key succeeded")
	}
	checkNoLeak(t, err)
	if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "master key does not match") {
		t.Errorf("error = %q, want ErrDecrypt naming the master key", err)
	}
}

// TestSecretWrongMasterKey bypasses Open's key check to make sure a wrong
// key reaching the decrypt path yields ErrDecrypt, not garbage or a panic.
func TestSecretWrongMasterKey(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	s.keys = testKeyring(t)

	got, _, err := s.Secret("prod", "openai")
	checkNoLeak(t, err)
	if !errors.Is(err, ErrDecrypt) || got.Len() != 0 {
		t.Fatalf("Secret with the wrong key: %d bytes, error %v; want ErrDecrypt", got.Len(), err)
	}
	want := `vault "prod": credential "openai": unwrap data key: decryption failed`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestTamperedRecord(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	mustAdd(t, s, testCredential("prod", "b", "KEY_B"), secretB)
	recA := sealedRecord(t, s, "prod", "a")
	recB := sealedRecord(t, s, "prod", "b")
	flipped := bytes.Clone(recA)
	flipped[len(flipped)-tagSize-1] ^= 0x80

	tests := []struct {
		name   string
		record []byte
	}{
		{"ciphertext bit flip", flipped},
		{"record of another credential", recB},
		{"truncated", recA[:10]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			putSealedRecord(t, s, "prod", "a", tt.record)
			got, _, err := s.Secret("prod", "a")
			checkNoLeak(t, err)
			if !errors.Is(err, ErrDecrypt) || got.Len() != 0 {
				t.Fatalf("tampered record: %d bytes, error %v; want ErrDecrypt", got.Len(), err)
			}
		})
	}
}

func TestRolledBackRecord(t *testing.T) {
	s, _, _ := openTestStore(t)
	mustAdd(t, s, testCredential("prod", "a", "KEY_A"), secretA)
	old := sealedRecord(t, s, "prod", "a")
	if _, err := s.RotateCredential("prod", "a", []byte(secretB)); err != nil {
		t.Fatal(err)
	}

	putSealedRecord(t, s, "prod", "a", old)
	_, _, err := s.Secret("prod", "a")
	checkNoLeak(t, err)
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("version 1 record under version 2 metadata: error %v, want ErrDecrypt", err)
	}
}

func TestClosedStore(t *testing.T) {
	s, _, _ := openTestStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Vaults(); !errors.Is(err, errClosed) {
		t.Errorf("Vaults after Close: %v, want errClosed", err)
	}
	if err := s.CreateVault("x"); !errors.Is(err, errClosed) {
		t.Errorf("CreateVault after Close: %v, want errClosed", err)
	}
}

func TestOpenSecondInstanceFails(t *testing.T) {
	_, path, key := openTestStore(t)
	s2, err := OpenBolt(path, key)
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a locked store succeeded")
	}
}
