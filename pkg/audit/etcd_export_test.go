package audit

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/etcdtest"
)

// TestEtcdMovesRecordsOut runs the moving of old records out of etcd on
// one cluster, each case under a prefix of its own.
func TestEtcdMovesRecordsOut(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client()
	ctx := context.Background()
	n := 0
	setup := func(t *testing.T) (prefix, dir string, open func(max int) *Etcd) {
		n++
		prefix, dir = "/export-test-"+string(rune('a'+n))+"/", t.TempDir()
		return prefix, dir, func(max int) *Etcd {
			t.Helper()
			l, err := OpenEtcd(cli, testKey(t), EtcdOptions{Prefix: prefix, Host: "host-a", MaxRecords: max, ExportDir: dir})
			if err != nil {
				t.Fatalf("OpenEtcd: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		}
	}
	inEtcd := func(t *testing.T, prefix string) int64 {
		t.Helper()
		resp, err := cli.Get(ctx, prefix+"audit/host-a/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	appendN := func(t *testing.T, l *Etcd, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := l.AppendSync(ctx, sample(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// settle waits until etcd holds at most want of the chain's records.
	settle := func(t *testing.T, prefix string, want int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); inEtcd(t, prefix) > want; {
			if time.Now().After(deadline) {
				t.Fatalf("etcd still holds %d records, want at most %d", inEtcd(t, prefix), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	checkAll := func(t *testing.T, l *Etcd, want int) {
		t.Helper()
		recs, err := l.Query(Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != want {
			t.Fatalf("Query = %d records, want %d", len(recs), want)
		}
		for i, r := range recs {
			if r.Seq != uint64(i+1) || !r.Time.Equal(sample(i).Time) {
				t.Fatalf("record %d: seq %d time %v, want seq %d, sample %d", i, r.Seq, r.Time, i+1, i)
			}
		}
		if recs, _ := l.Query(Filter{Limit: 3}); len(recs) != 3 || recs[2].Seq != uint64(want) {
			t.Errorf("Query(Limit 3) = %+v", recs)
		}
		rep, err := l.Verify()
		if err != nil || !rep.OK || rep.Records != want {
			t.Fatalf("Verify = %+v, %v; want OK with %d records", rep, err, want)
		}
	}

	t.Run("KeepsEtcdBoundedAndEveryRecordReadable", func(t *testing.T) {
		prefix, dir, open := setup(t)
		l := open(20)
		appendN(t, l, 0, 100)
		settle(t, prefix, 20)
		checkAll(t, l, 100)
		if seq, failing := l.Moved(); seq < 80 || failing {
			t.Errorf("Moved = %d, %v; want 80 or more, not failing", seq, failing)
		}

		// The export log is a log of its own, whole from seq 1.
		rep, err := VerifyFile(exportPath(dir, "host-a"), testKey(t))
		if err != nil || !rep.OK || rep.Records < 80 {
			t.Fatalf("VerifyFile(export) = %+v, %v", rep, err)
		}

		// Reopened, the chain continues from where it is, across the cut.
		l.Close()
		l = open(20)
		appendN(t, l, 100, 130)
		settle(t, prefix, 20)
		checkAll(t, l, 130)
	})

	t.Run("TamperAtTheCut", func(t *testing.T) {
		prefix, _, open := setup(t)
		l := open(10)
		appendN(t, l, 0, 40)
		settle(t, prefix, 10)
		l.Close()
		base, err := cli.Get(ctx, prefix+"audit-base/host-a")
		if err != nil || len(base.Kvs) != 1 {
			t.Fatalf("base: %v %v", base, err)
		}
		head, _ := cli.Get(ctx, prefix+"audit-head/host-a")
		chain, _ := cli.Get(ctx, prefix+"audit/host-a/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		first := chain.Kvs[0]
		restoreChain := func() {
			for _, kv := range chain.Kvs {
				cli.Put(ctx, string(kv.Key), string(kv.Value))
			}
		}

		reader := func(t *testing.T) *Etcd { // no moving, so nothing is mended behind the test's back
			l, err := OpenEtcd(cli, testKey(t), EtcdOptions{Prefix: prefix, Host: "host-b"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			return l
		}
		for _, c := range []struct {
			name   string
			tamper func()
			undo   func()
		}{
			{"base deleted", func() { cli.Delete(ctx, prefix+"audit-base/host-a") },
				func() { cli.Put(ctx, prefix+"audit-base/host-a", string(base.Kvs[0].Value)) }},
			// The head passed off as the base claims every record moved:
			// with the records in etcd deleted, nothing else would show.
			{"records deleted, head as base", func() {
				cli.Delete(ctx, prefix+"audit/host-a/", clientv3.WithPrefix())
				cli.Put(ctx, prefix+"audit-base/host-a", string(head.Kvs[0].Value))
			}, func() {
				restoreChain()
				cli.Put(ctx, prefix+"audit-base/host-a", string(base.Kvs[0].Value))
			}},
			{"first record after the base deleted", func() { cli.Delete(ctx, string(first.Key)) }, restoreChain},
		} {
			c.tamper()
			if rep, err := reader(t).Verify(); !errors.Is(err, ErrTampered) || rep.Failure == nil || rep.Failure.Chain != "host-a" {
				t.Errorf("%s: Verify = %+v, %v; want host-a's chain tampered", c.name, rep, err)
			}
			c.undo()
			if rep, err := reader(t).Verify(); err != nil || !rep.OK {
				t.Fatalf("%s undone: Verify = %+v, %v", c.name, rep, err)
			}
		}
	})

	t.Run("ExportLogBehindTheBase", func(t *testing.T) {
		prefix, dir, open := setup(t)
		l := open(10)
		appendN(t, l, 0, 40)
		settle(t, prefix, 10)
		// An older copy of the export log (a restored backup): its newest
		// segment gone, its head rewritten to the one before.
		path := exportPath(dir, "host-a")
		segs, err := segments(path)
		if err != nil || len(segs) < 2 {
			t.Fatalf("segments: %v %v", segs, err)
		}
		os.Remove(segs[len(segs)-1])
		rep, _ := VerifyFile(path, testKey(t))
		c, _ := newChainer(testKey(t))
		if err := writeHead(headPath(path), c, uint64(rep.Records), rep.LastHash); err != nil {
			t.Fatal(err)
		}
		if rep, err := l.Verify(); !errors.Is(err, ErrTampered) || rep.Failure == nil || rep.Failure.Reason != ReasonExportMismatch {
			t.Fatalf("Verify = %+v, %v; want %q", rep, err, ReasonExportMismatch)
		}
	})

	t.Run("MoveThatDidNotLandIsFinished", func(t *testing.T) {
		prefix, dir, open := setup(t)
		l := open(0) // records stay in etcd
		appendN(t, l, 0, 30)
		l.Close()
		// A step that wrote its segment and then stopped short of etcd.
		e := &etcdExporter{l: &Etcd{client: cli, k: etcdKeys{prefix: prefix}, host: "host-a", ctx: ctx},
			path: exportPath(dir, "host-a"), max: 10, base: head{Hash: genesis}}
		e.c, _ = newChainer(testKey(t))
		if _, err := e.writeSegment(12); err != nil {
			t.Fatal(err)
		}
		l = open(10)
		checkAll(t, l, 30) // no record twice, none missing
		settle(t, prefix, 10)
		checkAll(t, l, 30)
		if rep, err := VerifyFile(exportPath(dir, "host-a"), testKey(t)); err != nil || !rep.OK {
			t.Fatalf("VerifyFile(export) = %+v, %v", rep, err)
		}
	})

	t.Run("LostExportLogStopsTheMoving", func(t *testing.T) {
		prefix, dir, open := setup(t)
		l := open(10)
		appendN(t, l, 0, 30)
		settle(t, prefix, 10)
		l.Close()
		if err := os.RemoveAll(dir + "/host-a"); err != nil {
			t.Fatal(err)
		}
		l = open(10)
		appendN(t, l, 30, 60)
		time.Sleep(200 * time.Millisecond)
		// Nothing more left etcd: it holds the records the log could not take.
		if got := inEtcd(t, prefix); got < 40 {
			t.Fatalf("etcd holds %d records; records were moved with no log to continue", got)
		}
		if _, failing := l.Moved(); !failing {
			t.Error("Moved does not report the moving stopped")
		}
		if rep, err := l.Verify(); err != nil || !rep.OK {
			t.Fatalf("Verify = %+v, %v (the export log moved elsewhere is not a failure)", rep, err)
		}
	})
}
