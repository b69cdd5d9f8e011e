package schedule

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/etcdtest"
)

// testEtcdFleet runs two schedulers, hosts a and b, on one cluster and one
// prefix, each through a store and a client of its own, as two keygated
// hosts would.
func testEtcdFleet(t *testing.T, cluster *etcdtest.Cluster) {
	t.Run("EachDueOnce", func(t *testing.T) { testFleetEachDueOnce(t, cluster) })
	t.Run("SeenWithinRescan", func(t *testing.T) { testFleetSeenWithinRescan(t, cluster) })
	t.Run("PauseStopsOtherHost", func(t *testing.T) { testFleetPause(t, cluster) })
	t.Run("HistoryBounded", func(t *testing.T) { testFleetHistory(t, cluster) })
	t.Run("RestartContinues", func(t *testing.T) { testFleetRestart(t, cluster) })
	// Last: it kills a member, and the cluster is a moment recovering.
	t.Run("LeaderLost", func(t *testing.T) { testFleetLeaderLost(t, cluster) })
}

// fleet is a harness whose store is host a's; host b opens its own.
type fleet struct {
	*harness
	prefix string
	cliB   *clientv3.Client
}

// newFleet gives a and b clients of members 0 and 1, or, with shared set,
// clients of every member.
func newFleet(t *testing.T, cluster *etcdtest.Cluster, shared bool) *fleet {
	t.Helper()
	prefix := testPrefix()
	cliA, cliB := memberClient(t, cluster, 0), memberClient(t, cluster, 1)
	if shared {
		cliA, cliB = clusterClient(t, cluster), clusterClient(t, cluster)
	}
	h := newHarnessOn(t, func() Store {
		st, err := OpenEtcd(cliA, prefix)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
	return &fleet{harness: h, prefix: prefix, cliB: cliB}
}

// clusterClient returns a client of every member, closed when the test
// ends.
func clusterClient(t *testing.T, cluster *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cluster.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// openB opens a store for host b.
func (f *fleet) openB() Store { return openTestEtcd(f.t, f.cliB, f.prefix) }

// onStore makes a scheduler use st.
func onStore(st Store) func(*Config) { return func(c *Config) { c.Store = st } }

// start starts a on the harness's store and b on a store of its own, and
// waits until b too has timed every schedule there is.
func (f *fleet) start(mod ...func(*Config)) (a, b *Scheduler) {
	f.t.Helper()
	a = f.scheduler("a", mod...)
	b = f.scheduler("b", append(mod, onStore(f.openB()))...)
	for _, name := range f.names() {
		f.waitNext(a, name)
		f.waitNext(b, name)
	}
	return a, b
}

// waitIdle waits until n scheduler loops wait on the clock.
func (f *fleet) waitIdle(n int) {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("%d loops waiting", n), func() bool { return f.clock.pending() == n })
}

// checkOnce fails the test unless the schedule's ended runs are n, each
// for a due time of its own, and the runner started n runs in all.
func (f *fleet) checkOnce(name string, n int) []Run {
	f.t.Helper()
	runs := f.ended(name)
	seen := map[time.Time]string{}
	for _, r := range runs {
		if other, ok := seen[r.Due]; ok {
			f.t.Errorf("due %v ran on %s and %s", r.Due, other, r.Host)
		}
		seen[r.Due] = r.Host
	}
	if len(runs) != n || f.runner.count() != n {
		f.t.Errorf("%d runs recorded, %d started, want %d:%s", len(runs), f.runner.count(), n, summary(runs))
	}
	return runs
}

// knows reports whether s's loop has seen the schedule.
func knows(s *Scheduler, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[name] != nil
}

func testFleetEachDueOnce(t *testing.T, cluster *etcdtest.Cluster) {
	f := newFleet(t, cluster, false)
	a, b := f.start()
	f.create(a, spec("ping"))
	b.poke()
	f.waitNext(b, "ping")

	const dues = 10
	for i := range dues {
		f.step(5*time.Second, a, b)
		f.waitRuns("ping", i+1)
	}
	settle()
	hosts := map[string]int{}
	for _, r := range f.checkOnce("ping", dues) {
		hosts[r.Host]++
	}
	t.Logf("runs by host: %v", hosts)
}

func testFleetSeenWithinRescan(t *testing.T, cluster *etcdtest.Cluster) {
	f := newFleet(t, cluster, false)
	const rescan = 30 * time.Second
	a, b := f.start(func(c *Config) { c.Rescan = rescan })
	f.waitIdle(2) // both have read the empty store

	sp := spec("hourly")
	sp.Cron = "@every 1h"
	f.create(a, sp)
	if knows(b, "hourly") {
		t.Fatal("b saw the schedule before it reread the store")
	}
	f.clock.Advance(rescan)
	f.waitNext(b, "hourly")

	// A removal reaches b the same way.
	if err := a.Remove(context.Background(), "hourly"); err != nil {
		t.Fatal(err)
	}
	f.waitIdle(2)
	f.clock.Advance(rescan)
	f.waitFor("b to forget the schedule", func() bool { return !knows(b, "hourly") })
}

func testFleetPause(t *testing.T, cluster *etcdtest.Cluster) {
	ctx := context.Background()
	f := newFleet(t, cluster, false)
	a, b := f.start()
	f.create(a, spec("ping"))
	b.poke()
	f.waitNext(b, "ping")
	f.step(5*time.Second, a, b)
	f.waitRuns("ping", 1)

	// Paused on a, with a gone, so that only b could run it.
	if _, err := a.Pause(ctx, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	f.waitIdle(1)
	for range 4 {
		f.clock.Advance(5 * time.Second)
		f.waitIdle(1) // b woke, read the store and waits again
	}
	settle()
	if n := f.runner.count(); n != 1 {
		t.Fatalf("%d runs; b ran a schedule paused on a", n)
	}

	if _, err := b.Resume(ctx, "ping"); err != nil {
		t.Fatal(err)
	}
	f.waitNext(b, "ping")
	f.step(5*time.Second, b)
	if r := f.waitRuns("ping", 2)[0]; r.Host != "b" || r.Trigger != TriggerCron {
		t.Errorf("run after resume = %+v", r)
	}
}

func testFleetHistory(t *testing.T, cluster *etcdtest.Cluster) {
	f := newFleet(t, cluster, false)
	const keep, dues = 3, 8
	a, b := f.start(func(c *Config) { c.History = keep })
	sc := f.create(a, spec("ping"))
	b.poke()
	f.waitNext(b, "ping")
	for i := range dues {
		f.step(5*time.Second, a, b)
		f.waitFinished(i + 1)
	}

	runs, err := b.Runs(context.Background(), "ping", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != keep {
		t.Fatalf("history holds %d runs, want %d:%s", len(runs), keep, summary(runs))
	}
	for i, r := range runs {
		if want := sc.Created.Add(time.Duration(dues-i) * 5 * time.Second); !r.Due.Equal(want) {
			t.Errorf("run %d due %v, want %v", i, r.Due, want)
		}
	}
}

func testFleetRestart(t *testing.T, cluster *etcdtest.Cluster) {
	ctx := context.Background()
	f := newFleet(t, cluster, false)
	a, b := f.start()
	f.create(a, spec("ping"))
	f.create(a, spec("held"))
	if _, err := a.Pause(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	b.poke()
	f.waitNext(b, "ping")
	f.step(5*time.Second, a, b)
	f.waitRuns("ping", 1)

	// b goes down while a goes on; back, b runs nothing a ran.
	stop := func(s *Scheduler) {
		t.Helper()
		if err := s.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop(b)
	for i := range 3 {
		f.step(5*time.Second, a)
		f.waitRuns("ping", 2+i)
	}
	b = f.scheduler("b", onStore(f.openB()))
	f.waitNext(b, "ping")
	settle()
	f.checkOnce("ping", 4)

	// Both go down for ten intervals: the missed due times are run once,
	// on one host, and the schedule goes on from there.
	stop(a)
	stop(b)
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(50 * time.Second)
	f.open()
	a, b = f.start()
	if r := f.waitRuns("ping", 5)[0]; r.Trigger != TriggerMissed {
		t.Errorf("run after the restart = %+v", r)
	}
	for i := range 2 {
		f.step(5*time.Second, a, b)
		f.waitRuns("ping", 6+i)
	}
	settle()
	runs := f.checkOnce("ping", 7)
	if runs[0].Trigger != TriggerCron || !runs[0].Due.Equal(runs[1].Due.Add(5*time.Second)) {
		t.Errorf("runs after the restart:%s", summary(runs[:3]))
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != 2 || !list[0].Paused || list[0].Name != "held" {
		t.Errorf("List = %+v, %v", list, err)
	}
	if len(f.ended("held")) != 0 {
		t.Error("paused schedule ran")
	}
}

// testFleetLeaderLost kills the cluster's leader between two due times:
// the hosts' claims wait out the election, and each due time still runs
// once.
func testFleetLeaderLost(t *testing.T, cluster *etcdtest.Cluster) {
	f := newFleet(t, cluster, true)
	a, b := f.start()
	f.create(a, spec("ping"))
	b.poke()
	f.waitNext(b, "ping")
	f.step(5*time.Second, a, b)
	f.waitRuns("ping", 1)

	leader := leaderOf(t, cluster)
	leader.Kill()
	t.Cleanup(func() { cluster.Restart(leader) })
	for i := range 3 {
		f.step(5*time.Second, a, b)
		f.waitRuns("ping", 2+i)
	}
	settle()
	f.checkOnce("ping", 4)
}

// leaderOf returns the member that leads the cluster.
func leaderOf(t *testing.T, cluster *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	cli := clusterClient(t, cluster)
	for _, m := range cluster.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no member leads the cluster")
	return nil
}
