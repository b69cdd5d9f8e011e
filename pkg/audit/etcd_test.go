package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/etcdtest"
)

// TestEtcdLog runs the fleet log's tests on one cluster, each under a
// prefix of its own.
func TestEtcdLog(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	n := 0
	prefix := func() string { n++; return fmt.Sprintf("/audit-test-%d/", n) }
	open := func(t *testing.T, prefix, host string) *Etcd {
		t.Helper()
		l, err := OpenEtcd(cli, testKey(t), EtcdOptions{Prefix: prefix, Host: host})
		if err != nil {
			t.Fatalf("OpenEtcd: %v", err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	ctx := context.Background()

	t.Run("MergeAndVerify", func(t *testing.T) {
		p := prefix()
		a, b := open(t, p, "host-a"), open(t, p, "host-b")
		for i := range 10 {
			l := []*Etcd{a, b}[i%2]
			if err := l.Append(sample(i)); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range []*Etcd{a, b} {
			if err := l.AppendSync(ctx, Record{Kind: KindDNSDeny, Time: baseTime.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}

		recs, err := b.Query(Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 12 {
			t.Fatalf("Query = %d records, want 12", len(recs))
		}
		for i, r := range recs[:10] {
			want := map[bool]string{true: "host-a", false: "host-b"}[i%2 == 0]
			if !r.Time.Equal(sample(i).Time) || r.Node != want || r.Seq != uint64(i/2+1) {
				t.Errorf("record %d: time %v node %s seq %d; want sample %d of %s", i, r.Time, r.Node, r.Seq, i, want)
			}
		}
		if recs, _ := a.Query(Filter{Vault: "ci", Limit: 2}); len(recs) != 2 || recs[1].Time != sample(8).Time {
			t.Errorf("filtered query = %+v", recs)
		}

		rep, err := a.Verify()
		if err != nil || !rep.OK || rep.Records != 12 {
			t.Fatalf("Verify = %+v, %v", rep, err)
		}
	})

	t.Run("ReopenContinues", func(t *testing.T) {
		p := prefix()
		a := open(t, p, "host-a")
		if err := a.AppendSync(ctx, sample(0)); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Append(sample(1)); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close: %v", err)
		}
		a2 := open(t, p, "host-a")
		if err := a2.AppendSync(ctx, sample(1)); err != nil {
			t.Fatal(err)
		}
		if rep, err := a2.Verify(); err != nil || rep.Records != 2 {
			t.Fatalf("Verify = %+v, %v", rep, err)
		}
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		p := prefix()
		a := open(t, p, "host-a")
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 25 {
					if err := a.AppendSync(ctx, sample(g*25+i)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if rep, err := a.Verify(); err != nil || rep.Records != 200 {
			t.Fatalf("Verify = %+v, %v", rep, err)
		}
	})

	t.Run("SecondWriterBreaks", func(t *testing.T) {
		p := prefix()
		a, a2 := open(t, p, "host-a"), open(t, p, "host-a")
		if err := a.AppendSync(ctx, sample(0)); err != nil {
			t.Fatal(err)
		}
		if err := a2.AppendSync(ctx, sample(1)); !errors.Is(err, ErrBroken) {
			t.Fatalf("second writer on a chain: %v, want ErrBroken", err)
		}
		if rep, err := a.Verify(); err != nil || rep.Records != 1 {
			t.Errorf("Verify = %+v, %v", rep, err)
		}
	})

	t.Run("WrongKey", func(t *testing.T) {
		p := prefix()
		a := open(t, p, "host-a")
		if err := a.AppendSync(ctx, sample(0)); err != nil {
			t.Fatal(err)
		}
		other := make([]byte, KeySize)
		if _, err := OpenEtcd(cli, other, EtcdOptions{Prefix: p, Host: "host-a"}); !errors.Is(err, ErrTampered) {
			t.Errorf("OpenEtcd with another key: %v, want ErrTampered", err)
		}
	})

	t.Run("Tamper", func(t *testing.T) {
		tests := []struct {
			name   string
			edit   func(t *testing.T, k etcdKeys) // changes the stored chains
			reason Reason
			line   int
		}{
			{"changed record", func(t *testing.T, k etcdKeys) {
				v := get(t, cli, k.record("host-a", 2))
				put(t, cli, k.record("host-a", 2), strings.Replace(v, `"prod"`, `"prox"`, 1))
			}, ReasonHashMismatch, 2},
			{"record moved to another chain", func(t *testing.T, k etcdKeys) {
				put(t, cli, k.record("host-b", 1), get(t, cli, k.record("host-a", 1)))
			}, ReasonWrongChain, 1},
			{"last record deleted", func(t *testing.T, k etcdKeys) {
				del(t, cli, k.record("host-a", 3))
			}, ReasonShorterThanHead, 3},
			{"record deleted in the middle", func(t *testing.T, k etcdKeys) {
				del(t, cli, k.record("host-a", 2))
			}, ReasonSeqGap, 2},
			{"head deleted", func(t *testing.T, k etcdKeys) {
				del(t, cli, k.head("host-a"))
			}, ReasonNoHead, 0},
			{"head rewound", func(t *testing.T, k etcdKeys) {
				c, _ := newChainer(testKey(t))
				rec := get(t, cli, k.record("host-a", 1))
				r, _, _ := decodeLine([]byte(rec))
				b, _ := encodeHead(c, 1, r.Hash)
				put(t, cli, k.head("host-a"), string(b))
			}, ReasonBeyondHead, 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := prefix()
				a, b := open(t, p, "host-a"), open(t, p, "host-b")
				for i := range 3 {
					if err := a.AppendSync(ctx, sample(i)); err != nil {
						t.Fatal(err)
					}
				}
				tt.edit(t, etcdKeys{prefix: p})

				rep, err := b.Verify()
				if !errors.Is(err, ErrTampered) || rep.OK || rep.Failure == nil {
					t.Fatalf("Verify = %+v, %v; want a failure", rep, err)
				}
				if f := rep.Failure; f.Reason != tt.reason || f.Line != tt.line || f.Chain == "" {
					t.Errorf("failure = %+v, want %q at line %d with its chain", f, tt.reason, tt.line)
				}
			})
		}
	})

	t.Run("InvalidOptions", func(t *testing.T) {
		for _, host := range []string{"", "a/b", strings.Repeat("h", 254)} {
			if _, err := OpenEtcd(cli, testKey(t), EtcdOptions{Host: host}); !errors.Is(err, ErrInvalid) {
				t.Errorf("host %q: %v, want ErrInvalid", host, err)
			}
		}
	})
}

func get(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %v", key, resp, err)
	}
	return string(resp.Kvs[0].Value)
}

func put(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	if _, err := cli.Put(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	if _, err := cli.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdLogOutage appends while the cluster is down: the writer keeps the
// record and commits it once the cluster is back.
func TestEtcdLogOutage(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	l, err := OpenEtcd(cluster.Client(), testKey(t), EtcdOptions{Host: "host-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	m := cluster.Members[0]
	m.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := l.AppendSync(ctx, sample(0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AppendSync with etcd down: %v, want the context's deadline", err)
	}

	cluster.Restart(m)
	if err := l.AppendSync(context.Background(), sample(1)); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify()
	if err != nil || rep.Records != 2 {
		t.Fatalf("Verify = %+v, %v; want both records", rep, err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
