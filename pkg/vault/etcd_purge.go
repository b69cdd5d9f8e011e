package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Why compaction and defragmentation. etcd keeps every revision of every
// key until the history is compacted, so a deleted or replaced sealed
// record stays readable (Get WithRev) by anyone holding etcd credentials;
// with the master key, it would decrypt. Compaction drops those revisions
// from the key index, but the bytes stay on free pages of each member's
// bbolt file (member/snap/db) until defragmentation rewrites the file.
//
// Rotation and removal compact, which takes the old record out of reach of
// any client. Archiving, which must erase a vault's secrets outright, also
// defragments every member. What it costs:
//
//   - Compaction is cluster-wide: it drops the history of every key, not
//     only keygate's, and a watcher (on any host, of any program) that is
//     behind the compacted revision must reload. Give keygate a cluster of
//     its own.
//   - Defragmentation rewrites a member's whole database and blocks its
//     reads and writes meanwhile: milliseconds for keygate's few kilobytes,
//     longer for a big database. Members are done one at a time, so a
//     quorum keeps serving.
//
// TODO: the members' write-ahead logs (member/wal) also hold every write,
// sealed records included, until etcd takes a snapshot (--snapshot-count
// writes) and drops old segments (--max-wals); there is no client API to
// force that, so an archived vault's ciphertext can stay in the newest WAL
// segment on each member's disk for a long time. It is ciphertext under
// the master key, so it reveals nothing without it, but unlike Bolt's
// purge it is not gone.

// purgeTimeout bounds a purge of every member.
const purgeTimeout = time.Minute

// compact drops every revision before rev from etcd's history. A cluster
// already compacted further is fine.
func (s *Etcd) compact(ctx context.Context, rev int64) error {
	err := s.retry(ctx, func() error {
		_, err := s.client.Compact(ctx, rev)
		return err
	})
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("change saved, but compacting old revisions failed: %w", etcdError{err})
	}
	return nil
}

// Purge erases superseded revisions from every member of the cluster:
// compaction, then defragmentation of each member in turn, so the sealed
// records of archived vaults and of old credential versions are gone from
// the members' databases (see the TODO above for their logs). It clears
// the pending mark an archive sets once every member is done. Any host may
// run it, any number of times.
func (s *Etcd) Purge(ctx context.Context) error {
	// An archive that sets the mark again while this purge runs may have
	// committed after some member was done; the mark then stays for the
	// purge that archive runs itself.
	pending, err := s.client.Get(ctx, s.k.purgePending())
	if err != nil {
		return etcdError{fmt.Errorf("read purge mark: %w", err)}
	}
	var markRev int64
	if len(pending.Kvs) > 0 {
		markRev = pending.Kvs[0].ModRevision
	}

	resp, err := s.client.MemberList(ctx)
	if err != nil {
		return etcdError{fmt.Errorf("list members: %w", err)}
	}
	var errs []error
	for _, m := range resp.Members {
		if len(m.ClientURLs) == 0 {
			errs = append(errs, fmt.Errorf("member %x has not started", m.ID))
			continue
		}
		if err := s.purgeMember(ctx, m.ClientURLs); err != nil {
			errs = append(errs, fmt.Errorf("member %s: %w", m.Name, err))
			s.log.Warn("purge of old revisions failed", logMember, m.Name, logError, err)
		}
	}
	if len(errs) > 0 {
		return etcdError{errors.Join(errs...)}
	}
	// With a put beside the delete, as every change under the prefix has
	// one (see latestRevision).
	_, err = s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(s.k.purgePending()), "=", markRev)).
		Then(
			clientv3.OpDelete(s.k.purgePending()),
			clientv3.OpPut(s.k.purgeMark(), time.Now().UTC().Format(time.RFC3339Nano)),
		).Commit()
	if err != nil {
		return etcdError{fmt.Errorf("clear purge mark: %w", err)}
	}
	return nil
}

// purgeMember compacts and defragments the member at urls.
//
// Each member applies compactions in the background, in order; only the
// member that serves a physical compaction makes the caller wait for it.
// So each member gets a compaction of its own: a write through it gives a
// new revision, and compacting to that revision through it returns once
// this member has applied every compaction up to there. Only then does
// defragmentation have nothing left to keep.
func (s *Etcd) purgeMember(ctx context.Context, urls []string) error {
	c, err := newEtcdClient(s.cfg, urls, s.tls)
	if err != nil {
		return err
	}
	defer c.Close()

	for range 3 { // another host's compaction may overtake ours; then go again
		put, err := c.Put(ctx, s.k.purgeMark(), time.Now().UTC().Format(time.RFC3339Nano))
		if err != nil {
			return fmt.Errorf("write purge mark: %w", err)
		}
		_, err = c.Compact(ctx, put.Header.Revision, clientv3.WithCompactPhysical())
		if errors.Is(err, rpctypes.ErrCompacted) {
			continue
		}
		if err != nil {
			return fmt.Errorf("compact: %w", err)
		}
		if _, err := c.Defragment(ctx, urls[0]); err != nil {
			return fmt.Errorf("defragment: %w", err)
		}
		return nil
	}
	return errors.New("compaction kept being overtaken")
}
