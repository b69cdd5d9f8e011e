package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of the pause between two watch sessions, doubled on each failure
// in a row.
const (
	minWatchBackoff = 50 * time.Millisecond
	maxWatchBackoff = 2 * time.Second
)

// errWatchCompacted ends a watch session whose next revision is gone from
// etcd's history: the view is then reloaded whole.
var errWatchCompacted = errors.New("watch revision compacted")

// watchLoop keeps the view current until Close. Each session watches the
// prefix from the revision after the view's, so no change is missed across
// a reconnect; one that falls behind a compaction reloads instead.
func (s *Etcd) watchLoop() {
	defer s.wg.Done()
	backoff := minWatchBackoff
	for s.ctx.Err() == nil {
		err := s.watchSession()
		if errors.Is(err, errWatchCompacted) {
			err = s.reload()
		}
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = minWatchBackoff
			continue
		}
		s.log.Warn("etcd watch lost; resuming", logRevision, s.Revision(), logError, err)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, maxWatchBackoff)
	}
}

// watchSession runs one watch until it fails. The watch requires a leader,
// so a member cut off from the others ends it instead of keeping it open
// with nothing to say, and the client tries another member.
//
// The watch asks for no progress notifications: etcd before 3.4.24 and
// 3.5.8 could send a requested one ahead of events it had yet to send
// (https://github.com/etcd-io/etcd/issues/15220), and the client resumes a
// broken stream from the revision such a notification names, which would
// skip those events. Freshness comes from heartbeat instead.
func (s *Etcd) watchSession() error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
	defer cancel()

	s.mu.RLock()
	from := s.view.rev + 1
	s.mu.RUnlock()
	ch := s.client.Watch(ctx, s.k.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range ch {
		if resp.CompactRevision != 0 {
			return errWatchCompacted
		}
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return errWatchCompacted
			}
			return err
		}
		s.applyResponse(&resp)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// applyResponse applies a watch response to the view, tells the watchers
// and then publishes the new revision, in that order, so a writer waiting
// for its revision returns only after its change was reported.
//
// etcd keeps the events of one revision in one response, so the view
// never shows half a transaction.
func (s *Etcd) applyResponse(resp *clientv3.WatchResponse) {
	if len(resp.Events) == 0 {
		return
	}
	// Not the header's revision: a response to a watch still catching up
	// may stop short of it.
	rev := resp.Events[len(resp.Events)-1].Kv.ModRevision

	var changes []Change
	s.mu.Lock()
	for _, ev := range resp.Events {
		if c := s.view.apply(s.k, ev, s.log); c != nil {
			changes = append(changes, *c)
		}
	}
	s.view.rev = max(s.view.rev, rev)
	s.mu.Unlock()

	s.watch.notify(changes...)
	s.publish(rev)
}

// reload replaces the view with a fresh copy and reports what changed in
// between. It is the way back for a host whose next revision was compacted
// while it was away; the compaction that cost it the events is what purged
// the secrets they carried, so the difference is all there is to tell.
func (s *Etcd) reload() error {
	ctx, cancel := context.WithTimeout(s.ctx, etcdRequestTimeout)
	defer cancel()
	sent := time.Now()
	fresh, err := s.load(ctx)
	if err != nil {
		return err
	}

	s.mu.Lock()
	old := s.view
	s.view = fresh
	s.mu.Unlock()
	s.log.Info("etcd view reloaded after compaction", logRevision, fresh.rev)

	s.watch.notify(fresh.diff(old)...)
	s.publish(fresh.rev)
	s.markSynced(sent)
	return nil
}

// heartbeatInterval is how often the view's freshness is confirmed: often
// enough that a healthy cluster keeps the view well within its grace
// period, at most once a second.
func (s *Etcd) heartbeatInterval() time.Duration {
	return min(max(s.cfg.Grace/5, 20*time.Millisecond), time.Second)
}

// heartbeatLoop confirms the view's freshness until Close: it asks a
// quorum for the latest revision that touched the prefix and, once the view
// has reached it, notes the time of asking as the last sync. A host that
// cannot reach a quorum (its members down, or cut off from the leader)
// confirms nothing, so Secret starts failing once the grace period is over.
func (s *Etcd) heartbeatLoop() {
	defer s.wg.Done()
	tick := time.NewTicker(s.heartbeatInterval())
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, max(s.heartbeatInterval(), 500*time.Millisecond))
		latest, err := s.latestRevision(ctx)
		if err == nil {
			err = s.waitRevision(ctx, latest)
		}
		cancel()
		if err == nil {
			s.markSynced(sent)
		}
	}
}

// latestRevision returns the revision of the last change under the prefix,
// read from a quorum. Every transaction the engine commits puts at least
// one key, and a put key carries its revision until a later one replaces
// it, so the newest revision among the live keys is the newest change,
// deletions included.
func (s *Etcd) latestRevision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, s.k.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, etcdError{fmt.Errorf("read latest revision: %w", err)}
	}
	if len(resp.Kvs) == 0 {
		return 0, nil // not even the key check: nothing to wait for
	}
	return resp.Kvs[0].ModRevision, nil
}
