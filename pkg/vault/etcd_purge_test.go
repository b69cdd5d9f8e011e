package vault

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/internal/etcdtest"
)

// filesHolding returns the files under dir, outside skip, that hold needle.
func filesHolding(t *testing.T, dir string, needle []byte, skip string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && skip != "" && d.Name() == skip {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(raw, needle) {
			rel, _ := filepath.Rel(dir, path)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// viewRecord returns the sealed record s's view holds for vault/name.
func viewRecord(t *testing.T, s *Etcd, vault, name string) []byte {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := bytes.Clone(s.view.secrets[vault][name])
	if rec == nil {
		t.Fatalf("no sealed record for %s/%s in the view", vault, name)
	}
	return rec
}

// TestEtcdArchivePurgesMembers archives a vault and then looks for its
// sealed record in every member's files: the database must not hold it.
// The write-ahead log still does (see the TODO in etcd_purge.go); the test
// reports that rather than failing on it.
func TestEtcdArchivePurgesMembers(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	key := randomKey(t)
	s := openEtcd(t, EtcdConfig{Endpoints: cluster.Endpoints()}, key)
	mustAddStore(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	mustAddStore(t, s, testCredential("keep", "github", "GH_TOKEN"), secretB)
	gone := recordParts(viewRecord(t, s, "prod", "openai"))
	kept := recordParts(viewRecord(t, s, "keep", "github"))

	// Positive control: each member's database holds the record once its
	// backend has committed (etcd batches commits, every 100 ms).
	for _, m := range cluster.Members {
		for part, b := range gone {
			eventually(t, 5*time.Second, m.Name+" database holds the "+part, func() bool {
				return len(filesHolding(t, m.DataDir, b, "wal")) > 0
			})
		}
	}

	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatal(err)
	}
	for _, m := range cluster.Members {
		for part, b := range gone {
			if files := filesHolding(t, m.DataDir, b, "wal"); len(files) > 0 {
				t.Errorf("%s: purged %s still in %v", m.Name, part, files)
			}
			if files := filesHolding(t, filepath.Join(m.DataDir, "member", "wal"), b, ""); len(files) > 0 {
				t.Logf("%s: purged %s still in the write-ahead log %v (known; see etcd_purge.go)",
					m.Name, part, files)
			}
		}
		for part, b := range kept {
			if len(filesHolding(t, m.DataDir, b, "wal")) == 0 {
				t.Errorf("%s: %s of an untouched credential lost", m.Name, part)
			}
		}
		for _, secret := range []string{secretA, secretB} {
			if files := filesHolding(t, m.DataDir, []byte(secret), ""); len(files) > 0 {
				t.Errorf("%s: a plaintext secret is in %v", m.Name, files)
			}
		}
	}
	if got, _, err := s.Secret("keep", "github"); err != nil || string(got.Bytes()) != secretB {
		t.Errorf("store unusable after purge: %v", err)
	}

	// A purge is finished: a host opened now finds nothing pending.
	s2 := openEtcd(t, EtcdConfig{Endpoints: cluster.Endpoints()}, key)
	s2.mu.RLock()
	pending := s2.view.purgePending
	s2.mu.RUnlock()
	if pending {
		t.Error("purge still marked pending")
	}
}

// TestEtcdOldRevisionsCompacted checks that rotation and removal take the
// old sealed record out of reach of every etcd client.
func TestEtcdOldRevisionsCompacted(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	s := openEtcd(t, EtcdConfig{Endpoints: cluster.Endpoints()}, randomKey(t))
	cli := cluster.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, op := range []string{"rotate", "remove"} {
		t.Run(op, func(t *testing.T) {
			mustAddStore(t, s, testCredential(op, "c", "KEY_C"), secretA)
			key := s.k.secret(op, "c")
			before, err := cli.Get(ctx, key)
			if err != nil || len(before.Kvs) != 1 {
				t.Fatalf("sealed record: %v, %v", before, err)
			}
			if op == "rotate" {
				_, err = s.RotateCredential(op, "c", []byte(secretB))
			} else {
				err = s.RemoveCredential(op, "c")
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = cli.Get(ctx, key, clientv3.WithRev(before.Kvs[0].ModRevision))
			if !errors.Is(err, rpctypes.ErrCompacted) {
				t.Errorf("old revision read: %v, want ErrCompacted", err)
			}
		})
	}
}
