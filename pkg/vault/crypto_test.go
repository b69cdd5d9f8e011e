package vault

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

const cryptoTestSecret = "ghp_CRYPTO_SECRET_value_0001"

func testKeyring(t *testing.T) keyring {
	t.Helper()
	k, err := newKeyring(randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	key := make([]byte, keySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := testKeyring(t)
	rec, err := k.sealSecret("prod", "openai", 1, []byte(cryptoTestSecret))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rec, []byte(cryptoTestSecret)) {
		t.Fatal("sealed record contains the plaintext")
	}
	got, err := k.openSecret("prod", "openai", 1, rec)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != cryptoTestSecret {
		t.Fatal("round trip returned a different value (values withheld)")
	}

	again, err := k.sealSecret("prod", "openai", 1, []byte(cryptoTestSecret))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(rec[1:1+wrappedKeyLen], again[1:1+wrappedKeyLen]) {
		t.Error("two seals share a wrapped data key")
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKeyring(t)
	rec, err := k.sealSecret("prod", "openai", 3, []byte(cryptoTestSecret))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(rec)
		b[i] ^= 1
		return b
	}

	tests := []struct {
		name    string
		keys    keyring
		vault   string
		cred    string
		version uint64
		record  []byte
	}{
		{"other vault", k, "staging", "openai", 3, rec},
		{"other credential", k, "prod", "anthropic", 3, rec},
		{"other version", k, "prod", "openai", 2, rec},
		{"name boundary shift", k, "pro", "dopenai", 3, rec},
		{"wrong master key", testKeyring(t), "prod", "openai", 3, rec},
		{"format byte", k, "prod", "openai", 3, flip(0)},
		{"wrapped key nonce", k, "prod", "openai", 3, flip(1)},
		{"wrapped key body", k, "prod", "openai", 3, flip(20)},
		{"secret nonce", k, "prod", "openai", 3, flip(1 + wrappedKeyLen)},
		{"secret ciphertext", k, "prod", "openai", 3, flip(len(rec) - tagSize - 1)},
		{"secret tag", k, "prod", "openai", 3, flip(len(rec) - 1)},
		{"truncated", k, "prod", "openai", 3, rec[:len(rec)-1]},
		{"too short", k, "prod", "openai", 3, rec[:minRecordLen-1]},
		{"empty", k, "prod", "openai", 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.keys.openSecret(tt.vault, tt.cred, tt.version, tt.record)
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("openSecret error = %v, want ErrDecrypt", err)
			}
			if got != nil {
				t.Error("openSecret returned data along with its error")
			}
		})
	}
}

func TestKeyCheck(t *testing.T) {
	k := testKeyring(t)
	check, err := k.sealKeyCheck()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.verifyKeyCheck(check); err != nil {
		t.Fatalf("own key check: %v", err)
	}
	if err := testKeyring(t).verifyKeyCheck(check); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("other key: error = %v, want ErrDecrypt", err)
	}
}

func TestNewKeyringLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := newKeyring(make([]byte, n)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%d-byte master key: error = %v, want ErrInvalid", n, err)
		}
	}
}
