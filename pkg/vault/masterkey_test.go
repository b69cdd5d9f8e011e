package vault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateMasterKeyCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	key, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != keySize {
		t.Fatalf("key is %d bytes, want %d", len(key), keySize)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %#o, want 0600", fi.Mode().Perm())
	}

	again, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, again) {
		t.Error("second call returned a different key")
	}
}

func TestLoadOrCreateMasterKeyRefuses(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(path string) error
		invalid bool // error wraps ErrInvalid
	}{
		{"world readable", writeKey(keySize, 0o644), false},
		{"group readable", writeKey(keySize, 0o640), false},
		{"group writable", writeKey(keySize, 0o620), false},
		{"empty", writeKey(0, 0o600), true},
		{"short", writeKey(keySize-1, 0o600), true},
		{"long", writeKey(keySize+1, 0o600), true},
		{"directory", func(path string) error { return os.Mkdir(path, 0o700) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			key, err := LoadOrCreateMasterKey(path)
			if err == nil || key != nil {
				t.Fatalf("LoadOrCreateMasterKey = %d bytes, %v; want refusal", len(key), err)
			}
			if tt.invalid != errors.Is(err, ErrInvalid) {
				t.Errorf("error %v: wraps ErrInvalid = %v, want %v", err, !tt.invalid, tt.invalid)
			}
		})
	}
}

// writeKey returns a setup that writes an n-byte key file with mode perm.
func writeKey(n int, perm os.FileMode) func(string) error {
	return func(path string) error {
		if err := os.WriteFile(path, bytes.Repeat([]byte{7}, n), perm); err != nil {
			return err
		}
		return os.Chmod(path, perm) // WriteFile's mode is filtered by umask
	}
}

func TestLoadOrCreateMasterKeyMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "master.key")
	if _, err := LoadOrCreateMasterKey(path); err == nil {
		t.Fatal("created a key in a directory that does not exist")
	}
}
