package schedule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/internal/etcdtest"
)

// TestEtcd runs every etcd test on one three-member cluster; each subtest
// keeps its keys under a prefix of its own. It skips without an etcd
// binary, unless KEYGATE_REQUIRE_ROOT is set (testutil.RequireEtcd).
func TestEtcd(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	cli := cluster.Client()

	t.Run("Store", func(t *testing.T) {
		runStoreTests(t, func(t *testing.T) (Store, func() Store) {
			prefix := testPrefix()
			st := openTestEtcd(t, cli, prefix)
			return st, func() Store {
				st.Close()
				return openTestEtcd(t, cli, prefix)
			}
		})
	})
	t.Run("Layout", func(t *testing.T) { testEtcdLayout(t, cli) })
	t.Run("ClaimLease", func(t *testing.T) { testEtcdClaimLease(t, cli) })
	t.Run("InvalidName", func(t *testing.T) { testEtcdInvalidName(t, cli) })
	t.Run("Closed", func(t *testing.T) { testEtcdClosed(t, cli) })
	t.Run("LostReplies", func(t *testing.T) { testEtcdLostReplies(t, cluster) })
	t.Run("Fleet", func(t *testing.T) { testEtcdFleet(t, cluster) })
}

var prefixes atomic.Int64

// testPrefix returns a prefix no other test of the run uses.
func testPrefix() string { return fmt.Sprintf("/schedule-test-%d/", prefixes.Add(1)) }

// openTestEtcd opens the store under prefix on cli, closed when the test
// ends.
func openTestEtcd(t *testing.T, cli *clientv3.Client, prefix string) *Etcd {
	t.Helper()
	st, err := OpenEtcd(cli, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// memberClient returns a client of member i alone, closed when the test
// ends: a host of the fleet that talks to its own member.
func memberClient(t *testing.T, cluster *etcdtest.Cluster, i int) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{cluster.Members[i].ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testEtcdLayout checks the keys the store writes, which other tools of
// an operator may read.
func testEtcdLayout(t *testing.T, cli *clientv3.Client) {
	ctx := context.Background()
	prefix := testPrefix()
	st := openTestEtcd(t, cli, prefix[:len(prefix)-1]) // the '/' is added
	mustCreate(t, st, "a")
	r := Run{Schedule: "a", ID: "x1", Started: time.Unix(1_780_000_000, 5)}
	if err := st.PutRun(r, 10); err != nil {
		t.Fatal(err)
	}
	due := time.Unix(1_780_000_005, 0)
	if ok, err := st.Claim(ctx, "a", due, "h1"); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}

	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	var sc Schedule
	if err := json.Unmarshal([]byte(got[prefix+"schedules/a"]), &sc); err != nil || sc.Name != "a" {
		t.Errorf("schedule record %q: %v", got[prefix+"schedules/a"], err)
	}
	var stored Run
	err = json.Unmarshal([]byte(got[prefix+"runs/a/01780000000000000005-x1"]), &stored)
	if err != nil || stored.ID != "x1" {
		t.Errorf("run record: %v; keys %v", err, got)
	}
	if h := got[prefix+"claims/a/00000000001780000005"]; h != "h1" || len(got) != 3 {
		t.Errorf("claim holder %q; keys %v", h, got)
	}
}

// testEtcdClaimLease checks that claims expire with a lease of at least
// claimHorizon, shared between claims, and that a lost lease is replaced.
func testEtcdClaimLease(t *testing.T, cli *clientv3.Client) {
	ctx := context.Background()
	prefix := testPrefix()
	st := openTestEtcd(t, cli, prefix)
	mustCreate(t, st, "a")
	due := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	lease := func(due time.Time) clientv3.LeaseID {
		t.Helper()
		if ok, err := st.Claim(ctx, "a", due, "h1"); !ok || err != nil {
			t.Fatalf("Claim = %v, %v", ok, err)
		}
		resp, err := cli.Get(ctx, st.k.claim("a", due))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("claim key: %v, %v", resp, err)
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}

	first := lease(due)
	ttl, err := cli.TimeToLive(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	least := int64(claimHorizon / time.Second)
	if ttl.TTL < least || ttl.GrantedTTL > least+int64(claimLeaseShare/time.Second) {
		t.Errorf("claim lease TTL %d s of %d s granted, want at least %d s", ttl.TTL, ttl.GrantedTTL, least)
	}
	if next := lease(due.Add(time.Second)); next != first {
		t.Errorf("claims made together have leases %x and %x", first, next)
	}

	// Revoking the lease drops its claims; the next claim gets a new one.
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	if next := lease(due.Add(2 * time.Second)); next == first {
		t.Error("claim attached to a revoked lease")
	}
	if ok, err := st.Claim(ctx, "a", due, "h2"); !ok || err != nil {
		t.Errorf("claim whose lease was revoked still held: %v, %v", ok, err)
	}
}

func testEtcdInvalidName(t *testing.T, cli *clientv3.Client) {
	st := openTestEtcd(t, cli, testPrefix())
	mustCreate(t, st, "a")
	if err := st.CreateSchedule(Schedule{Spec: spec("a/b")}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create of a/b: %v, want ErrInvalid", err)
	}
	if err := st.PutRun(Run{Schedule: "a/b", ID: "x"}, 10); !errors.Is(err, ErrNotFound) {
		t.Errorf("run of a/b: %v", err)
	}
}

func testEtcdClosed(t *testing.T, cli *clientv3.Client) {
	st := openTestEtcd(t, cli, testPrefix())
	mustCreate(t, st, "a")
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Schedules(); !errors.Is(err, errClosed) {
		t.Errorf("Schedules after Close: %v", err)
	}
	if _, err := st.Claim(context.Background(), "a", time.Now(), "h1"); !errors.Is(err, errClosed) {
		t.Errorf("Claim after Close: %v", err)
	}
	// The shared client stays usable.
	if _, err := cli.Get(context.Background(), "health"); err != nil {
		t.Errorf("client after Close: %v", err)
	}
}

// lossyClient returns a client of cluster whose next lose transactions
// are applied by etcd but answered with codes.Unavailable, as when a
// member fails between committing a request and replying.
func lossyClient(t *testing.T, cluster *etcdtest.Cluster, lose *atomic.Int32) *clientv3.Client {
	t.Helper()
	drop := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil && method == "/etcdserverpb.KV/Txn" && lose.Add(-1) >= 0 {
			return status.Error(codes.Unavailable, "test: reply lost")
		}
		return err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cluster.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(drop)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testEtcdLostReplies checks that every write whose reply was lost after
// etcd applied it is retried to the outcome it would have had.
func testEtcdLostReplies(t *testing.T, cluster *etcdtest.Cluster) {
	var lose atomic.Int32
	st := openTestEtcd(t, lossyClient(t, cluster, &lose), testPrefix())
	lost := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s with its reply lost: %v", what, err)
		}
		if lose.Load() > 0 {
			t.Errorf("%s: no reply was lost", what)
		}
		lose.Store(1)
	}

	lose.Store(1)
	lost("CreateSchedule", st.CreateSchedule(Schedule{Spec: spec("a")}))
	_, err := st.UpdateSchedule("a", func(s *Schedule) error { s.LastExit++; return nil })
	lost("UpdateSchedule", err)
	if sc, _ := st.Schedule("a"); sc.LastExit != 1 {
		t.Errorf("one update applied %d times", sc.LastExit)
	}
	lost("PutRun", st.PutRun(Run{Schedule: "a", ID: "r1", Started: time.Now()}, 1))
	lost("PutRun", st.PutRun(Run{Schedule: "a", ID: "r2", Started: time.Now()}, 1))
	if runs, _ := st.Runs("a", 0); fmt.Sprint(runIDs(runs)) != "[r2]" {
		t.Errorf("runs = %v", runIDs(runs))
	}
	ok, err := st.Claim(context.Background(), "a", time.Now(), "h1")
	lost("Claim", err)
	if !ok {
		t.Error("claim with its reply lost was not won")
	}
	lost("DeleteSchedule", st.DeleteSchedule("a"))

	// A refusal whose reply was lost is still a refusal. (Schedules made
	// through a Scheduler differ at least in their creation time.)
	mustCreate(t, st, "b")
	lose.Store(1)
	err = st.CreateSchedule(Schedule{Spec: spec("b"), Created: time.Now()})
	if !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create with its reply lost: %v", err)
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{rpctypes.ErrNoLeader, true},
		{fmt.Errorf("txn: %w", rpctypes.ErrTimeoutDueToLeaderFail), true},
		{status.Error(codes.Unavailable, "connection lost"), true},
		{rpctypes.ErrCompacted, false},
		{context.DeadlineExceeded, false},
		{ErrExists, false},
	}
	for _, tt := range tests {
		if got := transient(tt.err); got != tt.want {
			t.Errorf("transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
