package vault

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// How writes serialise. Every write to a vault reads what it depends on
// (the vault's record, its generation and its credentials) in one snapshot,
// decides, and commits a transaction that applies only if neither the
// vault's record nor its generation has changed since; every credential
// change rewrites the generation. So any two writes to one vault that could
// invalidate each other's checks (the limit of MaxCredentials, a unique
// name or env var, the version a rotation increments, an archive against a
// rotation) conflict: etcd commits one, the other re-reads and decides
// again. etcd orders committed transactions by revision, and every host
// applies them in that order, so every host agrees on the outcome.

// maxTxnAttempts bounds the retries of a write that keeps losing races.
const maxTxnAttempts = 32

// vaultSnapshot is what a write reads of one vault before deciding.
type vaultSnapshot struct {
	name     string
	rec      vaultRecord
	exists   bool
	vaultRev int64        // ModRevision of the vault's record; 0 if absent
	genRev   int64        // ModRevision of its generation; 0 if never written
	gen      string       // the id of the write that set the generation
	creds    []Credential // sorted by name
}

// active fails unless the vault exists and is not archived.
func (v *vaultSnapshot) active() error {
	if !v.exists {
		return vaultError(v.name, ErrNotFound)
	}
	if v.rec.ArchivedAt != nil {
		return vaultError(v.name, ErrArchived)
	}
	return nil
}

// credential returns the metadata of the credential called name.
func (v *vaultSnapshot) credential(name string) (Credential, error) {
	i, ok := slices.BinarySearchFunc(v.creds, name, func(c Credential, n string) int {
		return strings.Compare(c.Name, n)
	})
	if !ok {
		return Credential{}, credError(v.name, name, ErrNotFound)
	}
	return v.creds[i], nil
}

// readVault reads a vault's snapshot from etcd, all at one revision.
func (s *Etcd) readVault(ctx context.Context, name string) (vaultSnapshot, error) {
	resp, err := s.client.Txn(ctx).Then(
		clientv3.OpGet(s.k.vault(name)),
		clientv3.OpGet(s.k.gen(name)),
		clientv3.OpGet(s.k.creds(name), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)),
	).Commit()
	if err != nil {
		return vaultSnapshot{}, vaultError(name, etcdError{fmt.Errorf("read: %w", err)})
	}

	snap := vaultSnapshot{name: name}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if err := json.Unmarshal(kvs[0].Value, &snap.rec); err != nil {
			return snap, vaultError(name, fmt.Errorf("decode record: %w", err))
		}
		snap.exists, snap.vaultRev = true, kvs[0].ModRevision
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		snap.genRev, snap.gen = kvs[0].ModRevision, string(kvs[0].Value)
	}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		var c Credential
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			cred := strings.TrimPrefix(string(kv.Key), s.k.creds(name))
			return snap, credError(name, cred, fmt.Errorf("decode metadata: %w", err))
		}
		snap.creds = append(snap.creds, c)
	}
	return snap, nil
}

// decideFunc decides a write from a vault's snapshot: the operations to
// commit, or the error that refuses the write.
type decideFunc func(*vaultSnapshot) ([]clientv3.Op, error)

// writeVault commits the operations decide returns for a snapshot of the
// vault, guarded as the comment at the top of this file describes, and
// returns the revision that committed them. decide runs again on a fresh
// snapshot after each lost race; its error ends the write.
//
// Errors etcd gives while it elects a leader are retried until ctx ends.
// A commit that failed that way may still have been applied, so every
// attempt writes the same random id into the generation, and a snapshot
// that shows it means the write is done. (If another writer's change lands
// on top of it within the same failure, the id is gone and the write is
// decided again: an add then fails with ErrExists, a rotation counts twice.)
func (s *Etcd) writeVault(ctx context.Context, name string, decide decideFunc) (int64, error) {
	id := rand.Text()
	for conflicts := 0; conflicts < maxTxnAttempts; {
		snap, err := s.readVault(ctx, name)
		if transient(err) && s.pause(ctx, transientPause) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if snap.gen == id {
			return snap.genRev, nil
		}
		ops, err := decide(&snap)
		if err != nil {
			return 0, err
		}

		ops = append(ops, clientv3.OpPut(s.k.gen(name), id))
		resp, err := s.client.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(s.k.vault(name)), "=", snap.vaultRev),
			clientv3.Compare(clientv3.ModRevision(s.k.gen(name)), "=", snap.genRev),
		).Then(ops...).Commit()
		if transient(err) && s.pause(ctx, transientPause) {
			continue
		}
		if err != nil {
			return 0, vaultError(name, etcdError{fmt.Errorf("commit (outcome unknown): %w", err)})
		}
		if resp.Succeeded {
			return resp.Header.Revision, nil
		}

		// Lost a race with another writer: spread the retries out.
		conflicts++
		s.pause(ctx, time.Duration(mrand.Int64N(int64(conflicts)*int64(2*time.Millisecond))))
	}
	return 0, vaultError(name, etcdError{fmt.Errorf("gave up after %d conflicting attempts", maxTxnAttempts)})
}

// transientPause is the wait before retrying a request etcd refused while
// it elects a leader; elections take about an election timeout (1 s by
// default).
const transientPause = 50 * time.Millisecond

// transient reports whether err is one etcd gives while it elects a leader
// or loses a member, worth retrying within the request's deadline.
func transient(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{
		rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrTimeout,
		rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrUnhealthy, rpctypes.ErrTooManyRequests,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable // also for a wrapped status
}

// pause waits for d and reports true, or reports false at once if ctx
// has ended.
func (s *Etcd) pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// retry runs an idempotent request until it succeeds, fails for good, or
// ctx ends.
func (s *Etcd) retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if !transient(err) || !s.pause(ctx, transientPause) {
			return err
		}
	}
}

// begin starts a write: it fails on a closed store and bounds the write's
// requests.
func (s *Etcd) begin() (context.Context, context.CancelFunc, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, nil, errClosed
	}
	ctx, cancel := context.WithTimeout(s.ctx, etcdRequestTimeout)
	return ctx, cancel, nil
}

// settle waits until the view, and so every watcher, shows revision rev.
func (s *Etcd) settle(ctx context.Context, rev int64) error {
	if err := s.waitRevision(ctx, rev); err != nil {
		return fmt.Errorf("change saved at revision %d, but this host has not seen it yet: %w", rev, err)
	}
	return nil
}

// CreateVault creates an empty vault; ErrExists if the name is taken, also
// by an archived vault.
func (s *Etcd) CreateVault(name string) error {
	if err := ValidateName(name); err != nil {
		return fmt.Errorf("vault %w", err)
	}
	ctx, cancel, err := s.begin()
	if err != nil {
		return err
	}
	defer cancel()

	rec := vaultRecord{Created: now()}
	raw, err := json.Marshal(rec)
	if err != nil {
		return vaultError(name, fmt.Errorf("encode record: %w", err))
	}
	key := s.k.vault(name)
	var resp *clientv3.TxnResponse
	err = s.retry(ctx, func() error {
		var err error
		resp, err = s.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(raw))).
			Else(clientv3.OpGet(key)).
			Commit()
		return err
	})
	if err != nil {
		return vaultError(name, etcdError{fmt.Errorf("commit (outcome unknown): %w", err)})
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		// Taken, unless by an attempt of ours whose answer was lost: the
		// record then carries our creation time, to the nanosecond.
		kv := resp.Responses[0].GetResponseRange().Kvs[0]
		var got vaultRecord
		if json.Unmarshal(kv.Value, &got) != nil || !got.Created.Equal(rec.Created) {
			return vaultError(name, ErrExists)
		}
		rev = kv.ModRevision
	}
	return vaultErrorOrNil(name, s.settle(ctx, rev))
}

// ArchiveVault marks a vault archived and deletes its sealed records in one
// transaction, then erases the old revisions that still hold them from
// every member (Purge). If that fails the archive stands, the error says
// so, and the next OpenEtcd or Purge on any host retries.
func (s *Etcd) ArchiveVault(name string) error {
	ctx, cancel, err := s.begin()
	if err != nil {
		return err
	}
	defer cancel()

	rev, err := s.writeVault(ctx, name, func(snap *vaultSnapshot) ([]clientv3.Op, error) {
		if err := snap.active(); err != nil {
			return nil, err
		}
		rec := snap.rec
		t := now()
		rec.ArchivedAt = &t
		raw, err := json.Marshal(rec)
		if err != nil {
			return nil, vaultError(name, fmt.Errorf("encode record: %w", err))
		}
		return []clientv3.Op{
			clientv3.OpPut(s.k.vault(name), string(raw)),
			clientv3.OpDelete(s.k.secrets(name), clientv3.WithPrefix()),
			clientv3.OpPut(s.k.purgePending(), ""),
		}, nil
	})
	if err != nil {
		return err
	}
	if err := s.settle(ctx, rev); err != nil {
		return vaultError(name, err)
	}

	pctx, pcancel := context.WithTimeout(s.ctx, purgeTimeout)
	defer pcancel()
	if err := s.Purge(pctx); err != nil {
		return vaultError(name, fmt.Errorf("change saved, but erasing old data failed (retried on next open): %w", err))
	}
	return nil
}

// AddCredential adds c with its secret, by the rules of Bolt.AddCredential,
// checked and committed in one guarded transaction.
func (s *Etcd) AddCredential(c Credential, secret []byte) error {
	c, err := prepareAdd(c, secret)
	if err != nil {
		return err
	}
	ctx, cancel, err := s.begin()
	if err != nil {
		return err
	}
	defer cancel()

	rev, err := s.writeVault(ctx, c.Vault, func(snap *vaultSnapshot) ([]clientv3.Op, error) {
		if err := snap.active(); err != nil {
			return nil, err
		}
		if err := checkNewCredential(c, snap.creds); err != nil {
			return nil, credError(c.Vault, c.Name, err)
		}
		return s.putCredentialOps(c, secret)
	})
	if err != nil {
		return err
	}
	return credErrorOrNil(c.Vault, c.Name, s.settle(ctx, rev))
}

// RotateCredential replaces a credential's secret, sealed under a fresh
// data key, and returns its metadata with Version incremented. The old
// revision that holds the previous record is compacted away.
func (s *Etcd) RotateCredential(vault, name string, secret []byte) (Credential, error) {
	if len(secret) == 0 {
		return Credential{}, credError(vault, name, fmt.Errorf("%w: empty secret", ErrInvalid))
	}
	ctx, cancel, err := s.begin()
	if err != nil {
		return Credential{}, err
	}
	defer cancel()

	var c Credential
	rev, err := s.writeVault(ctx, vault, func(snap *vaultSnapshot) ([]clientv3.Op, error) {
		if err := snap.active(); err != nil {
			return nil, err
		}
		var err error
		if c, err = snap.credential(name); err != nil {
			return nil, err
		}
		c.Version++
		c.Updated = now()
		return s.putCredentialOps(c, secret)
	})
	if err != nil {
		return Credential{}, err
	}
	if err := s.settle(ctx, rev); err != nil {
		return Credential{}, credError(vault, name, err)
	}
	if err := s.compact(ctx, rev); err != nil {
		return Credential{}, credError(vault, name, err)
	}
	return c, nil
}

// RemoveCredential deletes a credential, metadata and sealed record, and
// compacts away the revisions that held them.
func (s *Etcd) RemoveCredential(vault, name string) error {
	ctx, cancel, err := s.begin()
	if err != nil {
		return err
	}
	defer cancel()

	rev, err := s.writeVault(ctx, vault, func(snap *vaultSnapshot) ([]clientv3.Op, error) {
		if err := snap.active(); err != nil {
			return nil, err
		}
		if _, err := snap.credential(name); err != nil {
			return nil, err
		}
		return []clientv3.Op{
			clientv3.OpDelete(s.k.cred(vault, name)),
			clientv3.OpDelete(s.k.secret(vault, name)),
		}, nil
	})
	if err != nil {
		return err
	}
	if err := s.settle(ctx, rev); err != nil {
		return credError(vault, name, err)
	}
	return credErrorOrNil(vault, name, s.compact(ctx, rev))
}

// putCredentialOps seals secret for c's current version and returns the
// operations that store metadata and sealed record side by side.
func (s *Etcd) putCredentialOps(c Credential, secret []byte) ([]clientv3.Op, error) {
	record, err := s.keys.sealSecret(c.Vault, c.Name, c.Version, secret)
	if err != nil {
		return nil, credError(c.Vault, c.Name, err)
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, credError(c.Vault, c.Name, fmt.Errorf("encode record: %w", err))
	}
	return []clientv3.Op{
		clientv3.OpPut(s.k.cred(c.Vault, c.Name), string(raw)),
		clientv3.OpPut(s.k.secret(c.Vault, c.Name), string(record)),
	}, nil
}

// vaultErrorOrNil is vaultError for an error that may be nil.
func vaultErrorOrNil(vault string, err error) error {
	if err == nil {
		return nil
	}
	return vaultError(vault, err)
}

// credErrorOrNil is credError for an error that may be nil.
func credErrorOrNil(vault, name string, err error) error {
	if err == nil {
		return nil
	}
	return credError(vault, name, err)
}
