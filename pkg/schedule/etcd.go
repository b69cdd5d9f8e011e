package schedule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/pkg/vault"
)

// Key layout of the fleet engine under the prefix P. Schedule names obey
// vault.ValidateName, which excludes '/', so P runs/NAME/ holds the runs
// of NAME alone and not those of a schedule whose name starts with NAME.
//
//	P schedules/NAME             JSON Schedule
//	P runs/NAME/START-ID         JSON Run; START is the start in unix ns, 20 digits
//	P claims/NAME/DUE            the claiming host; DUE is the due time in unix s, 20 digits
//
// The numbers are zero-padded so that keys sort like the times, and the
// history is read newest first with a descending range. Claim keys are
// attached to a lease and expire by themselves (etcd_claim.go).

// DefaultEtcdPrefix is the prefix OpenEtcd uses when given "". It lies
// outside the vault engine's default prefix on purpose: the vault engine
// loads and watches everything under its own prefix, and run records,
// rewritten at the end of every run with up to MaxOutput bytes of output,
// would reach every host's vault watch for nothing.
const DefaultEtcdPrefix = "/keygate-schedule/"

// etcdTimeout bounds one call of a method of Etcd, retries included. It
// outlasts a leader election: a member holds a request it cannot commit
// for a few seconds before it fails it.
const etcdTimeout = 10 * time.Second

// etcdRetryPause is the wait before a request that etcd failed for want
// of a leader or a member is sent again.
const etcdRetryPause = 50 * time.Millisecond

// errClosed is returned by the methods of an Etcd after Close.
var errClosed = errors.New("schedule store closed")

// etcdKeys names the keys of the layout above.
type etcdKeys struct{ prefix string }

func (k etcdKeys) schedules() string           { return k.prefix + "schedules/" }
func (k etcdKeys) schedule(name string) string { return k.schedules() + name }
func (k etcdKeys) runs(name string) string     { return k.prefix + "runs/" + name + "/" }
func (k etcdKeys) claims(name string) string   { return k.prefix + "claims/" + name + "/" }
func (k etcdKeys) run(r Run) string {
	return k.runs(r.Schedule) + padded(unixNano(r.Started)) + "-" + r.ID
}
func (k etcdKeys) claim(name string, due time.Time) string {
	return k.claims(name) + padded(due.Unix())
}

// unixNano is t in unix nanoseconds; times before 1970 count as 0, where
// time.UnixNano would be undefined or negative.
func unixNano(t time.Time) int64 {
	if t.Unix() < 0 {
		return 0
	}
	return t.UnixNano()
}

// padded formats a non-negative number in 20 digits, enough for any int64,
// so that keys sort like the numbers; negative numbers count as 0.
func padded(n int64) string { return fmt.Sprintf("%020d", max(n, 0)) }

// Etcd is the fleet engine: every host of a fleet opens one on the fleet's
// etcd cluster and the same prefix, and so reads the same schedules, and
// Claim grants each due time of a schedule to one host only. Every read
// and write is a request to the cluster; nothing is cached, so a change
// made on one host is seen by the next read on any other.
//
// Hosts must have distinct Config.Host names: a claim is granted again to
// the host that holds it.
//
// Each write of a run record (at its start and at its end, with up to
// MaxOutput bytes of output) stays in etcd's history until the cluster is
// compacted. The vault engine compacts when a credential is rotated or
// removed; between those, only --auto-compaction-retention on the cluster
// keeps busy schedules from filling its space quota.
type Etcd struct {
	client *clientv3.Client
	k      etcdKeys
	done   context.Context // ends at Close, and with it every request
	close  context.CancelFunc

	mu    sync.Mutex // guards lease
	lease claimLease // the lease new claims are attached to
}

var _ Store = (*Etcd)(nil)

// OpenEtcd returns the store kept under prefix ("" means
// DefaultEtcdPrefix; a missing trailing '/' is added) on client, which the
// caller keeps and closes after the store: the vault engine's connection
// (vault.Etcd.Client) serves. It makes no request: a cluster that cannot
// be reached fails the store's methods, not the open.
func OpenEtcd(client *clientv3.Client, prefix string) (*Etcd, error) {
	if client == nil {
		return nil, errors.New("open etcd schedule store: no client")
	}
	if prefix == "" {
		prefix = DefaultEtcdPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	done, cancel := context.WithCancel(context.Background())
	return &Etcd{client: client, k: etcdKeys{prefix: prefix}, done: done, close: cancel}, nil
}

// Close ends the requests in flight and makes later calls fail. It leaves
// the client open, and the claims in place: they must outlive the host
// that made them.
func (e *Etcd) Close() error {
	e.close()
	return nil
}

// request returns the context of one method call: it ends after
// etcdTimeout, with parent, or at Close.
func (e *Etcd) request(parent context.Context) (context.Context, context.CancelFunc, error) {
	if e.done.Err() != nil {
		return nil, nil, errClosed
	}
	ctx, cancel := context.WithTimeout(parent, etcdTimeout)
	stop := context.AfterFunc(e.done, cancel)
	return ctx, func() { stop(); cancel() }, nil
}

// retry calls attempt until it returns an error that is not transient,
// or ctx ends. retried tells attempt that an earlier attempt failed
// transiently, and so may or may not have been applied.
func retry(ctx context.Context, attempt func(retried bool) error) error {
	for retried := false; ; retried = true {
		err := attempt(retried)
		if !transient(err) || !pause(ctx) {
			return err
		}
	}
}

// transient reports whether err is one etcd gives while the cluster has
// no leader or the client has lost its member: the request may or may not
// have been applied, and may succeed if sent again.
func transient(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{
		rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged, rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail,
		rpctypes.ErrTimeoutDueToConnectionLost, rpctypes.ErrUnhealthy, rpctypes.ErrTooManyRequests,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return status.Code(err) == codes.Unavailable
}

// CreateSchedule stores a new schedule if no schedule has its name.
func (e *Etcd) CreateSchedule(s Schedule) error {
	// The name becomes part of keys; one holding '/' would reach into
	// another schedule's runs.
	if err := vault.ValidateName(s.Name); err != nil {
		return fmt.Errorf("%w: name %w", ErrInvalid, err)
	}
	val, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode schedule %q: %w", s.Name, err)
	}
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return err
	}
	defer cancel()

	key := e.k.schedule(s.Name)
	return retry(ctx, func(retried bool) error {
		resp, err := e.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, string(val))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return fmt.Errorf("create schedule %q: %w", s.Name, err)
		}
		if resp.Succeeded {
			return nil
		}
		// After an attempt that may have been applied, finding exactly
		// what it wrote, creation time to the nanosecond included, means
		// it was.
		if kv := firstKV(resp.Responses[0]); retried && kv != nil && bytes.Equal(kv.Value, val) {
			return nil
		}
		return fmt.Errorf("schedule %q: %w", s.Name, ErrExists)
	})
}

// UpdateSchedule applies fn to the stored schedule and stores the result
// if the schedule has not changed since it was read; if it has, fn is
// applied again to what changed it.
//
// When a write fails in a way that leaves open whether etcd applied it,
// the schedule is read again: if it holds what the write wrote, the write
// was applied. If another host's change landed on top of it in the
// meantime, fn is applied a second time, which the scheduler's functions
// (setting fields, never counting) are indifferent to.
func (e *Etcd) UpdateSchedule(name string, fn func(*Schedule) error) (Schedule, error) {
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return Schedule{}, err
	}
	defer cancel()

	key := e.k.schedule(name)
	var cur *mvccpb.KeyValue // the stored schedule, or nil to read it
	var wrote []byte         // what an attempt that may have been applied wrote
	for {
		if cur == nil {
			if cur, err = e.get(ctx, key); err != nil {
				return Schedule{}, fmt.Errorf("update schedule %q: %w", name, err)
			}
			if cur == nil {
				return Schedule{}, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
			}
		}
		s, err := decodeSchedule(name, cur.Value)
		if err != nil || wrote != nil && bytes.Equal(cur.Value, wrote) {
			return s, err
		}
		if err := fn(&s); err != nil {
			return Schedule{}, err
		}
		val, err := json.Marshal(s)
		if err != nil {
			return Schedule{}, fmt.Errorf("encode schedule %q: %w", name, err)
		}

		resp, err := e.client.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.ModRevision)).
			Then(clientv3.OpPut(key, string(val))).
			Else(clientv3.OpGet(key)).
			Commit()
		switch {
		case transient(err) && pause(ctx):
			cur, wrote = nil, val
			continue
		case err != nil:
			return Schedule{}, fmt.Errorf("update schedule %q: %w", name, err)
		case resp.Succeeded:
			return s, nil
		}
		// Another write came first; decide again on what it stored.
		if cur = firstKV(resp.Responses[0]); cur == nil {
			return Schedule{}, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
	}
}

// DeleteSchedule removes a schedule with its runs and claims in one
// transaction, so no host sees the schedule without its history.
func (e *Etcd) DeleteSchedule(name string) error {
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return err
	}
	defer cancel()

	key := e.k.schedule(name)
	return retry(ctx, func(retried bool) error {
		resp, err := e.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0)).
			Then(
				clientv3.OpDelete(key),
				clientv3.OpDelete(e.k.runs(name), clientv3.WithPrefix()),
				clientv3.OpDelete(e.k.claims(name), clientv3.WithPrefix()),
			).Commit()
		switch {
		case err != nil:
			return fmt.Errorf("delete schedule %q: %w", name, err)
		case !resp.Succeeded && !retried:
			return fmt.Errorf("schedule %q: %w", name, ErrNotFound)
		}
		// Gone after an attempt that may have been applied: this call or
		// another removed it, and either way it is removed.
		return nil
	})
}

// Schedule returns one schedule.
func (e *Etcd) Schedule(name string) (Schedule, error) {
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return Schedule{}, err
	}
	defer cancel()

	kv, err := e.get(ctx, e.k.schedule(name))
	if err != nil {
		return Schedule{}, fmt.Errorf("read schedule %q: %w", name, err)
	}
	if kv == nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", name, ErrNotFound)
	}
	return decodeSchedule(name, kv.Value)
}

// Schedules lists every schedule, sorted by name (the keys' order).
func (e *Etcd) Schedules() ([]Schedule, error) {
	ctx, cancel, err := e.request(context.Background())
	if err != nil {
		return nil, err
	}
	defer cancel()

	var resp *clientv3.GetResponse
	err = retry(ctx, func(bool) error {
		resp, err = e.client.Get(ctx, e.k.schedules(), clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read schedules: %w", err)
	}
	var out []Schedule
	for _, kv := range resp.Kvs {
		s, err := decodeSchedule(strings.TrimPrefix(string(kv.Key), e.k.schedules()), kv.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeSchedule(name string, val []byte) (Schedule, error) {
	var s Schedule
	if err := json.Unmarshal(val, &s); err != nil {
		return Schedule{}, fmt.Errorf("decode schedule %q: %w", name, err)
	}
	return s, nil
}

// get reads one key, or nil if it is absent.
func (e *Etcd) get(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	var kv *mvccpb.KeyValue
	err := retry(ctx, func(bool) error {
		resp, err := e.client.Get(ctx, key)
		if err == nil && len(resp.Kvs) > 0 {
			kv = resp.Kvs[0]
		}
		return err
	})
	return kv, err
}

// firstKV returns the first key-value of a range in a transaction's
// response, or nil.
func firstKV(r *etcdserverpb.ResponseOp) *mvccpb.KeyValue {
	if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
		return kvs[0]
	}
	return nil
}

// pause waits etcdRetryPause and reports true, or reports false once ctx
// has ended.
func pause(ctx context.Context) bool {
	select {
	case <-time.After(etcdRetryPause):
		return true
	case <-ctx.Done():
		return false
	}
}
