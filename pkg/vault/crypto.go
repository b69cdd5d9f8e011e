package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// Key hierarchy. The master key (32 bytes, LoadOrCreateMasterKey) wraps one
// random data key per credential version; the data key seals that version's
// secret. Both layers are AES-256-GCM with a random 96-bit nonce, and both
// bind the vault name, credential name and version as additional data, so a
// sealed record copied onto another credential, or an older version restored
// over a newer one, fails authentication instead of decrypting.
//
// A sealed record, as stored in the secrets bucket:
//
//	[0]      recordFormat
//	[1:61]   wrapped data key: nonce(12) | AES-GCM(master, data key)(32+16)
//	[61:]    sealed secret:    nonce(12) | AES-GCM(data key, secret)(n+16)
const (
	keySize       = 32
	nonceSize     = 12
	tagSize       = 16
	wrappedKeyLen = nonceSize + keySize + tagSize
	recordFormat  = 1
	minRecordLen  = 1 + wrappedKeyLen + nonceSize + tagSize
)

// Purposes separate the additional data of the two layers and the key
// check, so no ciphertext of one kind verifies as another.
const (
	purposeDataKey  = "data-key"
	purposeSecret   = "secret"
	purposeKeyCheck = "key-check"
)

// keyCheckPlain is sealed under the master key when a store is created, so
// Open can tell a wrong master key apart before any secret is read.
const keyCheckPlain = "keygate master key check"

// keyring seals and opens records under one master key.
type keyring struct {
	master cipher.AEAD
}

func newKeyring(masterKey []byte) (keyring, error) {
	if len(masterKey) != keySize {
		return keyring{}, fmt.Errorf("master key: %w: %d bytes, want %d", ErrInvalid, len(masterKey), keySize)
	}
	aead, err := newAEAD(masterKey)
	if err != nil {
		return keyring{}, err
	}
	return keyring{master: aead}, nil
}

// sealSecret encrypts secret under a fresh data key and returns the record.
func (k keyring) sealSecret(vault, name string, version uint64, secret []byte) ([]byte, error) {
	dataKey := make([]byte, keySize)
	defer clear(dataKey)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, fmt.Errorf("generate data key: %w", err)
	}

	data, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	wrapped, err := seal(k.master, dataKey, recordAAD(purposeDataKey, vault, name, version))
	if err != nil {
		return nil, err
	}
	sealed, err := seal(data, secret, recordAAD(purposeSecret, vault, name, version))
	if err != nil {
		return nil, err
	}

	record := make([]byte, 0, 1+len(wrapped)+len(sealed))
	record = append(record, recordFormat)
	record = append(record, wrapped...)
	return append(record, sealed...), nil
}

// openSecret authenticates and decrypts a record made by sealSecret for the
// same vault, name and version. Every failure wraps ErrDecrypt.
func (k keyring) openSecret(vault, name string, version uint64, record []byte) ([]byte, error) {
	if len(record) < minRecordLen || record[0] != recordFormat {
		return nil, fmt.Errorf("malformed sealed record: %w", ErrDecrypt)
	}
	wrapped, sealed := record[1:1+wrappedKeyLen], record[1+wrappedKeyLen:]

	dataKey, err := open(k.master, wrapped, recordAAD(purposeDataKey, vault, name, version))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key: %w", err)
	}
	defer clear(dataKey)

	data, err := newAEAD(dataKey)
	if err != nil {
		return nil, err
	}
	secret, err := open(data, sealed, recordAAD(purposeSecret, vault, name, version))
	if err != nil {
		return nil, fmt.Errorf("unseal secret: %w", err)
	}
	return secret, nil
}

// sealKeyCheck returns the value Open later passes to verifyKeyCheck.
func (k keyring) sealKeyCheck() ([]byte, error) {
	return seal(k.master, []byte(keyCheckPlain), recordAAD(purposeKeyCheck, "", "", 0))
}

// verifyKeyCheck reports whether check was sealed under this master key.
func (k keyring) verifyKeyCheck(check []byte) error {
	plain, err := open(k.master, check, recordAAD(purposeKeyCheck, "", "", 0))
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(plain, []byte(keyCheckPlain)) != 1 {
		return fmt.Errorf("key check mismatch: %w", ErrDecrypt)
	}
	return nil
}

// recordAAD builds the additional data binding a ciphertext to its place.
// Names are length-prefixed so no two (vault, name) pairs encode alike.
func recordAAD(purpose, vault, name string, version uint64) []byte {
	b := make([]byte, 0, 48+len(vault)+len(name))
	b = append(b, "keygate/vault/v1\x00"...)
	b = append(b, purpose...)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(vault)))
	b = append(b, vault...)
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint64(b, version)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("aes-gcm: %w", err)
	}
	return aead, nil
}

// seal returns nonce | ciphertext | tag with a fresh random nonce.
func seal(aead cipher.AEAD, plain, aad []byte) ([]byte, error) {
	nonce := make([]byte, nonceSize, nonceSize+len(plain)+tagSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generate nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, plain, aad), nil
}

// open reverses seal. The AEAD's own error is dropped on purpose: it says
// only "message authentication failed", which ErrDecrypt already conveys.
func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < nonceSize+tagSize {
		return nil, fmt.Errorf("ciphertext too short: %w", ErrDecrypt)
	}
	plain, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return plain, nil
}
