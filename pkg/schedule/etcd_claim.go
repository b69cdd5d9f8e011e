package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// How claims expire. Each claim key is attached to an etcd lease that is
// never kept alive, so etcd deletes the key when the lease runs out and
// no host has to sweep. A lease per claim would put one lease into etcd
// for every due time of every schedule; instead the claims a store makes
// within claimLeaseShare of each other share a lease granted for
// claimHorizon+claimLeaseShare, so each claim lives between claimHorizon
// and claimHorizon+claimLeaseShare. Hosts only race for due times of the
// last few seconds, so a day is ample.
const claimLeaseShare = time.Hour

// claimLease is the lease a store attaches its new claims to.
type claimLease struct {
	id    clientv3.LeaseID // 0 until one is granted
	until time.Time        // when new claims stop using it
}

// Claim reserves (name, due) for host in one transaction: it creates the
// claim key if, and only if, the key is absent and the schedule exists.
// etcd applies transactions one at a time, so of all hosts that race for
// the key exactly one finds it absent; the others find it held and get
// false, unless it is held by their own host name.
//
// A claim that failed in a way that leaves open whether etcd applied it
// is simply made again: the host then finds its own claim, and gets true.
func (e *Etcd) Claim(ctx context.Context, name string, due time.Time, host string) (bool, error) {
	ctx, cancel, err := e.request(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()

	var won bool
	err = retry(ctx, func(bool) error {
		won, err = e.claim(ctx, name, due, host)
		return err
	})
	return won, err
}

func (e *Etcd) claim(ctx context.Context, name string, due time.Time, host string) (bool, error) {
	sched, key := e.k.schedule(name), e.k.claim(name, due)
	for regranted := false; ; regranted = true {
		lease, err := e.claimLease(ctx)
		if err != nil {
			return false, fmt.Errorf("claim %s of %q: grant lease: %w", due.Format(time.RFC3339), name, err)
		}
		resp, err := e.client.Txn(ctx).
			If(
				clientv3.Compare(clientv3.CreateRevision(sched), ">", 0),
				clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			).
			Then(clientv3.OpPut(key, host, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(sched, clientv3.WithCountOnly()), clientv3.OpGet(key)).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && !regranted {
			// Revoked by hand, or lost with a restore from a backup
			// older than the lease: grant another.
			e.dropLease(lease)
			continue
		}
		switch {
		case err != nil:
			return false, fmt.Errorf("claim %s of %q: %w", due.Format(time.RFC3339), name, err)
		case resp.Succeeded:
			return true, nil
		case resp.Responses[0].GetResponseRange().GetCount() == 0:
			return false, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
		holder := firstKV(resp.Responses[1])
		return holder != nil && string(holder.Value) == host, nil
	}
}

// claimLease returns the lease to attach a new claim to, granting one if
// the current one has taken claims for claimLeaseShare. Leases run out in
// real time, so this reads the system clock, not the scheduler's.
func (e *Etcd) claimLease(ctx context.Context) (clientv3.LeaseID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.lease.id != 0 && now.Before(e.lease.until) {
		return e.lease.id, nil
	}
	resp, err := e.client.Grant(ctx, int64((claimHorizon+claimLeaseShare)/time.Second))
	if err != nil {
		return 0, err
	}
	e.lease = claimLease{id: resp.ID, until: now.Add(claimLeaseShare)}
	return resp.ID, nil
}

// dropLease forgets id, if it is still the current lease, so that the next
// claim grants another.
func (e *Etcd) dropLease(id clientv3.LeaseID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease.id == id {
		e.lease = claimLease{}
	}
}
