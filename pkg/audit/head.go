package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Suffixes of the files kept next to the log: the head, and the temporary
// file a new head is written to before it is renamed over the old one.
const (
	headSuffix = ".head"
	tmpSuffix  = ".tmp"
)

// head names the last durable record of a log. Seq 0 with the genesis hash
// is the head of an empty log.
type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"` // the record's hash
	MAC  string `json:"mac"`  // chainer.headHash of Seq and Hash
}

// errNoHead is returned by readHead when the head file does not exist.
var errNoHead = errors.New("no head file")

// readHead reads and authenticates the head file at path. A missing file
// wraps errNoHead; a file that does not parse or authenticate is a *Failure.
func readHead(path string, c *chainer) (head, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return head{}, fmt.Errorf("read audit head: %w", errNoHead)
	}
	if err != nil {
		return head{}, fmt.Errorf("read audit head: %w", err)
	}

	h, fail := parseHead(b, c)
	if fail != nil {
		return head{}, fail
	}
	return h, nil
}

// parseHead decodes and authenticates an encoded head.
func parseHead(b []byte, c *chainer) (head, *Failure) {
	return parseSealed(b, c.headHash, ReasonBadHead)
}

// parseBase decodes and authenticates an etcd chain's encoded base, which
// has a head's form under another seal (chainer.baseHash).
func parseBase(b []byte, c *chainer) (head, *Failure) {
	return parseSealed(b, c.baseHash, ReasonBadBase)
}

func parseSealed(b []byte, seal func(uint64, string) string, bad Reason) (head, *Failure) {
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return head{}, &Failure{Reason: bad, Detail: err.Error()}
	}
	if !equalHash(h.MAC, seal(h.Seq, h.Hash)) {
		return head{}, &Failure{Reason: bad, Detail: "mac does not verify"}
	}
	return h, nil
}

// encodeHead returns the encoding of a head naming seq and recHash.
func encodeHead(c *chainer, seq uint64, recHash string) ([]byte, error) {
	return encodeSealed(head{Seq: seq, Hash: recHash, MAC: c.headHash(seq, recHash)})
}

// encodeBase returns the encoding of an etcd chain's base naming seq and
// recHash.
func encodeBase(c *chainer, seq uint64, recHash string) ([]byte, error) {
	return encodeSealed(head{Seq: seq, Hash: recHash, MAC: c.baseHash(seq, recHash)})
}

func encodeSealed(h head) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode audit head: %w", err)
	}
	return b, nil
}

// writeHead replaces the head file at path with one naming seq and hash.
// The new content is fsynced before the rename, so after a crash the head
// is the old one or the new one, never a torn mix. The directory is not
// fsynced: losing the rename in a power cut leaves an older head, which
// still names a record the log holds, so only detection is weakened.
func writeHead(path string, c *chainer, seq uint64, recHash string) error {
	b, err := encodeHead(c, seq, recHash)
	if err != nil {
		return err
	}

	tmp := path + tmpSuffix
	if err := writeFileSync(tmp, append(b, lineEnd)); err != nil {
		return fmt.Errorf("write audit head: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write audit head: %w", err)
	}
	return nil
}

// writeFileSync writes b to a new or truncated file at path and fsyncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// headPath returns the head file of the log at path.
func headPath(path string) string {
	return filepath.Clean(path) + headSuffix
}
