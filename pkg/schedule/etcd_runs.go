package schedule

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// How the history stays bounded. PutRun lists the keys of the schedule's
// runs, decides which of the oldest to drop so that keep remain with the
// new run, and commits the put and the deletion in one transaction that
// applies only if no run key of the schedule was written since the listing
// (every key of the range has an older ModRevision). Two hosts storing
// runs of one schedule at once therefore conflict; the loser lists again.
// The history never holds more than keep runs, on any host's reading.

// PutRun stores r and, if it is new, drops the oldest runs of its schedule
// beyond keep, in the same transaction.
func (e *Etcd) PutRun(r Run, keep int) error {
	val, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode run %s of %q: %w", r.ID, r.Schedule, err)
	}
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return err
	}
	defer cancel()

	// Every attempt lists afresh, so one that was applied before it failed
	// is found as a replacement and trims nothing more.
	return retry(ctx, func(bool) error { return e.putRun(ctx, r, string(val), keep) })
}

func (e *Etcd) putRun(ctx context.Context, r Run, val string, keep int) error {
	sched, runs, key := e.k.schedule(r.Schedule), e.k.runs(r.Schedule), e.k.run(r)
	for {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(sched), ">", 0)}
		ops := []clientv3.Op{clientv3.OpPut(key, val)}
		if keep > 0 {
			list, err := e.client.Get(ctx, runs, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
			if err != nil {
				return fmt.Errorf("store run %s of %q: list runs: %w", r.ID, r.Schedule, err)
			}
			keys := make([]string, len(list.Kvs))
			for i, kv := range list.Kvs {
				keys[i] = string(kv.Key)
			}
			put, below := trimPlan(keys, key, keep)
			ops = ops[:0]
			if put {
				ops = append(ops, clientv3.OpPut(key, val))
			}
			if below != "" {
				// A range ending at the oldest kept key; it never holds
				// the key put, which etcd refuses in one transaction.
				ops = append(ops, clientv3.OpDelete(runs, clientv3.WithRange(below)))
			}
			cmps = append(cmps,
				clientv3.Compare(clientv3.ModRevision(runs), "<", list.Header.Revision+1).WithPrefix())
		}

		resp, err := e.client.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(sched, clientv3.WithCountOnly())).Commit()
		switch {
		case err != nil:
			return fmt.Errorf("store run %s of %q: %w", r.ID, r.Schedule, err)
		case resp.Succeeded:
			return nil
		case resp.Responses[0].GetResponseRange().GetCount() == 0:
			return fmt.Errorf("schedule %q: %w", r.Schedule, ErrNotFound)
		}
		// Another run of the schedule was stored since the listing.
	}
}

// trimPlan decides how to store key among the sorted run keys of its
// schedule so that at most keep remain: whether to put it, and below
// which key ("" for none) to delete the older ones. A key already there
// is replaced without trimming, as Bolt does; a new key older than the
// keep newest would be dropped at once, so it is not put at all.
func trimPlan(keys []string, key string, keep int) (put bool, below string) {
	i, found := slices.BinarySearch(keys, key)
	if found || len(keys) < keep {
		return true, ""
	}
	all := slices.Insert(slices.Clone(keys), i, key)
	below = all[len(all)-keep]
	return key >= below, below
}

// Runs returns a schedule's runs, newest first, reading the schedule and
// its runs at one revision.
func (e *Etcd) Runs(name string, limit int) ([]Run, error) {
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return nil, err
	}
	defer cancel()

	var resp *clientv3.TxnResponse
	err = retry(ctx, func(bool) error {
		resp, err = e.client.Txn(ctx).Then(
			clientv3.OpGet(e.k.schedule(name), clientv3.WithCountOnly()),
			clientv3.OpGet(e.k.runs(name), clientv3.WithPrefix(), clientv3.WithLimit(int64(max(limit, 0))),
				clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)),
		).Commit()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read runs of %q: %w", name, err)
	}
	if resp.Responses[0].GetResponseRange().GetCount() == 0 {
		return nil, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
	}
	var out []Run
	for _, kv := range resp.Responses[1].GetResponseRange().GetKvs() {
		var r Run
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode run %s: %w", kv.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}
