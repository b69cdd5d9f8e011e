package audit

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
)

// KeySize is the size of the audit key and of the master key it is derived
// from.
const KeySize = 32

// keyInfo is the HKDF info string; a new chain format takes a new version so
// its key is unrelated to this one's.
const keyInfo = "keygate audit v1"

// headPurpose prefixes the input of the head file's HMAC. Record inputs
// begin with a 32-byte hash and then '{', so the two never coincide.
const headPurpose = "keygate audit head v1\x00"

// basePurpose prefixes the input of the HMAC that seals an etcd chain's
// base (the last record moved out of etcd). It differs from headPurpose so
// a head cannot be passed off as a base: that would claim every record of
// the chain had been moved out.
const basePurpose = "keygate audit base v1\x00"

// hashSize is the size of a record hash: one HMAC-SHA256.
const hashSize = sha256.Size

// genesis is the prev of the first record: 32 zero bytes, hex encoded.
var genesis = hex.EncodeToString(make([]byte, hashSize))

// DeriveKey returns the audit key for keygate's 32-byte master key. OpenFile
// takes this key rather than the master key, so the audit log, and anything
// that only verifies it, never holds the key that unwraps secrets.
func DeriveKey(masterKey []byte) ([]byte, error) {
	if len(masterKey) != KeySize {
		return nil, fmt.Errorf("derive audit key: %w: master key is %d bytes, want %d",
			ErrInvalid, len(masterKey), KeySize)
	}
	// No salt: the master key is already uniformly random (RFC 5869 §3.1).
	key, err := hkdf.Key(sha256.New, masterKey, nil, keyInfo, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive audit key: %w", err)
	}
	return key, nil
}

// chainer computes the hashes of records and of the head under one key.
type chainer struct {
	mac hash.Hash // HMAC-SHA256 under the audit key; not safe for concurrent use
}

func newChainer(key []byte) (*chainer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("audit key: %w: %d bytes, want %d", ErrInvalid, len(key), KeySize)
	}
	return &chainer{mac: hmac.New(sha256.New, key)}, nil
}

// recordHash returns HMAC(key, prev || body) in hex, prev being the
// previous record's hash in hex. A prev that is not 64 hex digits cannot
// have come from the log; it is hashed as it stands, which the verifier
// reports as a hash mismatch even if the record's own hash was recomputed.
func (c *chainer) recordHash(prev string, body []byte) string {
	c.mac.Reset()
	raw, err := hex.DecodeString(prev)
	if err != nil || len(raw) != hashSize {
		raw = []byte(prev)
	}
	c.mac.Write(raw)
	c.mac.Write(body)
	return hex.EncodeToString(c.mac.Sum(nil))
}

// headHash returns the HMAC that seals a head file naming seq and hash.
func (c *chainer) headHash(seq uint64, recHash string) string {
	return c.seal(headPurpose, seq, recHash)
}

// baseHash returns the HMAC that seals an etcd chain's base naming seq and
// hash.
func (c *chainer) baseHash(seq uint64, recHash string) string {
	return c.seal(basePurpose, seq, recHash)
}

func (c *chainer) seal(purpose string, seq uint64, recHash string) string {
	c.mac.Reset()
	c.mac.Write([]byte(purpose))
	c.mac.Write(binary.BigEndian.AppendUint64(nil, seq))
	c.mac.Write([]byte(recHash))
	return hex.EncodeToString(c.mac.Sum(nil))
}

// equalHash compares two hex hashes exactly, in constant time. Case matters:
// "AB" and "ab" decode alike but are different bytes on disk.
func equalHash(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}
