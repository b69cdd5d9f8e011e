package vault

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/etcdtest"
)

// TestEtcdMemberFailure kills the leader of a three-member cluster while
// two hosts serve secrets and one rotates: no lookup may fail, and the
// rotation must reach the other host.
func TestEtcdMemberFailure(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	key := randomKey(t)
	cfg := EtcdConfig{Endpoints: cluster.Endpoints(), Grace: 4 * time.Second}
	a, b := openEtcd(t, cfg, key), openEtcd(t, cfg, key)
	mustAddStore(t, a, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	mustSync(t, b)

	ctx, stop := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		reads  = make([]int, 2)
		failed = make(chan error, 2)
	)
	for i, s := range []*Etcd{a, b} {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, _, err := s.Secret("prod", "openai"); err != nil {
					failed <- err
					return
				}
				reads[i]++
				time.Sleep(2 * time.Millisecond)
			}
		})
	}

	leader := leaderOf(t, cluster)
	t.Logf("killing the leader, %s", leader.Name)
	leader.Kill()

	// Writes go on through the two members left, and reach b.
	for i := range 5 {
		secret := []string{secretB, secretA}[i%2]
		if _, err := a.RotateCredential("prod", "openai", []byte(secret)); err != nil {
			t.Fatalf("rotation %d with a member down: %v", i, err)
		}
		eventually(t, 5*time.Second, "rotation reaches b", func() bool { return secretIs(b, "prod", "openai", secret) })
	}
	// Longer than the grace period: the hosts must still be in sync.
	time.Sleep(cfg.Grace + 500*time.Millisecond)
	cluster.Restart(leader)

	stop()
	wg.Wait()
	close(failed)
	for err := range failed {
		checkNoLeak(t, err)
		t.Errorf("a lookup failed while a member was down: %v", err)
	}
	t.Logf("lookups served: a %d, b %d", reads[0], reads[1])
}

// leaderOf returns the member that leads the cluster now.
func leaderOf(t *testing.T, cluster *etcdtest.Cluster) *etcdtest.Member {
	t.Helper()
	cli := cluster.Client()
	for _, m := range cluster.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if st.Leader == st.Header.MemberId {
			return m
		}
	}
	t.Fatal("no member leads")
	return nil
}

// TestEtcdPartition cuts host A off from the cluster, by pointing it at one
// member and stopping that member, while host B writes through the other
// two. A must fail closed after its grace period and catch up when the
// member returns, both when its watch can resume from where it stopped and
// when a compaction forces it to reload.
func TestEtcdPartition(t *testing.T) {
	tests := []struct {
		name   string
		reload bool // a must reload its view rather than resume its watch
		// change is made on b while a is cut off; it returns the change a
		// must report after catching up and a check of a's state.
		change func(t *testing.T, b *Etcd) (Change, func(a *Etcd) bool)
	}{
		{"resume", false, func(t *testing.T, b *Etcd) (Change, func(a *Etcd) bool) {
			// An addition compacts nothing: a's watch resumes.
			mustAddStore(t, b, testCredential("prod", "added", "ADDED_KEY"), secretB)
			return Change{Kind: ChangeAdd, Vault: "prod", Credential: "added"},
				func(a *Etcd) bool { return secretIs(a, "prod", "added", secretB) }
		}},
		{"reload", true, func(t *testing.T, b *Etcd) (Change, func(a *Etcd) bool) {
			// A rotation compacts history up to its own revision, which
			// a's watch could still resume from; a second compacts past
			// it, and a must reload.
			for _, secret := range []string{secretA, secretB} {
				if _, err := b.RotateCredential("prod", "openai", []byte(secret)); err != nil {
					t.Fatal(err)
				}
			}
			return Change{Kind: ChangeRotate, Vault: "prod", Credential: "openai"},
				func(a *Etcd) bool { return secretIs(a, "prod", "openai", secretB) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster := etcdtest.Start(t, 3)
			key := randomKey(t)
			cut := cluster.Members[0]
			const grace = 2 * time.Second
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			a := openEtcd(t, EtcdConfig{Endpoints: []string{cut.ClientURL}, Grace: grace, Logger: logger}, key)
			b := openEtcd(t, EtcdConfig{Endpoints: cluster.Endpoints()[1:]}, key)
			mustAddStore(t, b, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
			mustSync(t, a)

			var rec changeRecorder
			defer a.Watch(rec.record)()

			cut.Kill()
			lost := time.Now()
			// Within the grace period a keeps serving what it has.
			if !secretIs(a, "prod", "openai", secretA) {
				t.Fatal("a stopped serving before its grace period ended")
			}
			want, caughtUp := tt.change(t, b)
			eventually(t, grace+2*time.Second, "a fails closed", func() bool {
				_, _, err := a.Secret("prod", "openai")
				return errors.Is(err, ErrUnavailable)
			})
			// Grace counts from the last confirmation, up to one heartbeat
			// before the cut.
			if d := time.Since(lost); d < grace-a.heartbeatInterval() {
				t.Errorf("a failed closed %v after the cut, before its grace of %v", d, grace)
			}
			_, _, err := a.Secret("prod", "openai")
			checkNoLeak(t, err)
			t.Logf("cut off: %v", err)
			if _, err := a.Credential("prod", "openai"); err != nil {
				t.Errorf("metadata read while cut off: %v", err)
			}

			cluster.Restart(cut)
			eventually(t, 10*time.Second, "a catches up", func() bool { return caughtUp(a) })
			found := slices.ContainsFunc(rec.take(), func(c Change) bool {
				return c.Kind == want.Kind && c.Vault == want.Vault && c.Credential == want.Credential
			})
			if !found {
				t.Errorf("a's watcher never reported %+v", want)
			}
			out := logs.String()
			if reloaded := strings.Contains(out, "view reloaded"); reloaded != tt.reload {
				t.Errorf("a reloaded its view: %v, want %v", reloaded, tt.reload)
			}
			if strings.Contains(out, secretA) || strings.Contains(out, secretB) {
				t.Error("a secret is in the log (log withheld)")
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// changeRecorder collects the changes a store reports.
type changeRecorder struct {
	mu      sync.Mutex
	changes []Change
}

func (r *changeRecorder) record(c Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *changeRecorder) take() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}
