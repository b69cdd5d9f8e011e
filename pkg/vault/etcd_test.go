package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/etcdtest"
)

// openEtcd opens an Etcd store on endpoints, closed at the end of the test.
func openEtcd(t *testing.T, cfg EtcdConfig, key []byte) *Etcd {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	s, err := OpenEtcd(cfg, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// testWriter writes a store's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// mustAddStore creates the vault if needed and adds a credential.
func mustAddStore(t *testing.T, s Store, c Credential, secret string) {
	t.Helper()
	if err := s.CreateVault(c.Vault); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := s.AddCredential(c, []byte(secret)); err != nil {
		t.Fatal(err)
	}
}

// mustSync waits until s has seen every change committed so far.
func mustSync(t *testing.T, s *Etcd) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// secretIs reports whether s serves want for vault/name.
func secretIs(s Store, vault, name, want string) bool {
	got, _, err := s.Secret(vault, name)
	return err == nil && string(got.Bytes()) == want
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseEtcdURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want EtcdConfig // compared on the fields set here
		ok   bool
	}{
		{"one host", "etcd://127.0.0.1:2379", EtcdConfig{Endpoints: []string{"127.0.0.1:2379"}}, true},
		{"hosts and options",
			"etcd://h1:2379,h2:2379,[::1]:2379?prefix=/kg/&cert=/c.pem&key=/k.pem&ca=/ca.pem&grace=10s&dial-timeout=2s",
			EtcdConfig{
				Endpoints: []string{"h1:2379", "h2:2379", "[::1]:2379"}, Prefix: "/kg/",
				CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem",
				Grace: 10 * time.Second, DialTimeout: 2 * time.Second,
			}, true},
		{"other scheme", "http://h1:2379", EtcdConfig{}, false},
		{"no port", "etcd://h1", EtcdConfig{}, false},
		{"empty host list", "etcd://", EtcdConfig{}, false},
		{"trailing comma", "etcd://h1:2379,", EtcdConfig{}, false},
		{"path", "etcd://h1:2379/kg", EtcdConfig{}, false},
		{"unknown option", "etcd://h1:2379?user=root", EtcdConfig{}, false},
		{"repeated option", "etcd://h1:2379?prefix=/a/&prefix=/b/", EtcdConfig{}, false},
		{"bad grace", "etcd://h1:2379?grace=soon", EtcdConfig{}, false},
		{"negative grace", "etcd://h1:2379?grace=-1s", EtcdConfig{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEtcdURL(tt.url)
			if !tt.ok {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseEtcdURL(%q) = %+v, %v; want ErrInvalid", tt.url, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got.Logger = nil
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want) {
				t.Errorf("ParseEtcdURL(%q) =\n%+v, want\n%+v", tt.url, got, tt.want)
			}
		})
	}
}

func TestEtcdConfigValidate(t *testing.T) {
	cfg := EtcdConfig{Endpoints: []string{"h:1"}, Prefix: "/kg"}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Prefix != "/kg/" || cfg.Grace != DefaultEtcdGrace || cfg.DialTimeout != DefaultEtcdDialTimeout {
		t.Errorf("validated config = %+v", cfg)
	}
	if err := (&EtcdConfig{}).validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("no endpoints: %v, want ErrInvalid", err)
	}
	half := EtcdConfig{Endpoints: []string{"h:1"}, CertFile: "/c.pem"}
	if _, err := half.tlsConfig(); !errors.Is(err, ErrInvalid) {
		t.Errorf("cert without key: %v, want ErrInvalid", err)
	}
}

// TestEtcdFleet runs two hosts, A and B, on one three-member cluster and
// one prefix.
func TestEtcdFleet(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	key := randomKey(t)
	cfg := EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: "/fleet/"}

	t.Run("WrongMasterKey", func(t *testing.T) {
		openEtcd(t, cfg, key)
		s, err := OpenEtcd(cfg, randomKey(t))
		if err == nil {
			s.Close()
			t.Fatal("OpenEtcd with another master key succeeded")
		}
		checkNoLeak(t, err)
		if !errors.Is(err, ErrDecrypt) {
			t.Errorf("error = %v, want ErrDecrypt", err)
		}
	})

	t.Run("Propagation", func(t *testing.T) {
		a, b := openEtcd(t, cfg, key), openEtcd(t, cfg, key)
		testPropagation(t, a, b)
	})

	t.Run("RotateRacesArchive", func(t *testing.T) {
		a, b := openEtcd(t, cfg, key), openEtcd(t, cfg, key)
		testRotateRacesArchive(t, a, b)
	})

	t.Run("LimitAcrossHosts", func(t *testing.T) {
		a, b := openEtcd(t, cfg, key), openEtcd(t, cfg, key)
		testLimitAcrossHosts(t, a, b)
	})
}

// testPropagation rotates on a 100 times and measures how long each new
// secret takes to reach b: from the start of RotateCredential on a to b's
// watcher being called with the new version.
func testPropagation(t *testing.T, a, b *Etcd) {
	mustAddStore(t, a, testCredential("prop", "openai", "OPENAI_API_KEY"), secretA)
	mustSync(t, b)

	seen := make(chan time.Time, 16) // when b's watcher saw a rotation
	cancel := b.Watch(func(c Change) {
		if c.Kind == ChangeRotate && c.Vault == "prop" {
			seen <- time.Now()
		}
	})
	defer cancel()

	const rounds = 100
	var lat []time.Duration
	for i := range rounds {
		secret := []string{secretA, secretB}[i%2]
		start := time.Now()
		if _, err := a.RotateCredential("prop", "openai", []byte(secret)); err != nil {
			t.Fatal(err)
		}
		select {
		case at := <-seen:
			lat = append(lat, at.Sub(start))
		case <-time.After(5 * time.Second):
			t.Fatalf("rotation %d did not reach b", i)
		}
		// b's next lookup carries the new secret.
		if !secretIs(b, "prop", "openai", secret) {
			t.Fatalf("rotation %d: b serves another secret after its watcher ran", i)
		}
	}

	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	t.Logf("propagation over %d rotations: p50 %v, p99 %v, max %v", rounds, p50, p99, slices.Max(lat))
	if p99 > time.Second {
		t.Errorf("p99 propagation %v, want at most 1s", p99)
	}
}

// testRotateRacesArchive races a rotation on a against an archive on b, 50
// times, and requires both hosts to end in the same state: archived, with
// the credential at version 2 if the rotation won and 1 if it lost.
func testRotateRacesArchive(t *testing.T, a, b *Etcd) {
	wins := 0
	for i := range 50 {
		vault := fmt.Sprintf("race%d", i)
		mustAddStore(t, a, testCredential(vault, "c", "KEY_C"), secretA)
		mustSync(t, b)

		var (
			wg                 sync.WaitGroup
			rotateErr, archErr error
			start              = make(chan struct{})
			rotated            Credential
		)
		wg.Go(func() { <-start; rotated, rotateErr = a.RotateCredential(vault, "c", []byte(secretB)) })
		wg.Go(func() { <-start; archErr = b.ArchiveVault(vault) })
		close(start)
		wg.Wait()

		if archErr != nil {
			t.Fatalf("round %d: archive: %v", i, archErr)
		}
		want := uint64(1)
		switch {
		case rotateErr == nil:
			want = rotated.Version
			wins++
		case !errors.Is(rotateErr, ErrArchived):
			t.Fatalf("round %d: rotate: %v, want success or ErrArchived", i, rotateErr)
		}
		checkNoLeak(t, rotateErr)

		mustSync(t, a)
		mustSync(t, b)
		for _, s := range []*Etcd{a, b} {
			info, err := s.Vault(vault)
			if err != nil || !info.Archived {
				t.Fatalf("round %d: vault on one host = %+v, %v; want archived", i, info, err)
			}
			c, err := s.Credential(vault, "c")
			if err != nil || c.Version != want {
				t.Fatalf("round %d: credential = %+v, %v; want version %d", i, c, err, want)
			}
			if _, _, err := s.Secret(vault, "c"); !errors.Is(err, ErrArchived) {
				t.Fatalf("round %d: Secret after archive: %v", i, err)
			}
		}
	}
	t.Logf("rotation committed before the archive in %d of 50 races", wins)
}

// testLimitAcrossHosts adds credentials to one vault from two hosts at once
// and requires the limit and env uniqueness to hold across them.
func testLimitAcrossHosts(t *testing.T, a, b *Etcd) {
	if err := a.CreateVault("limit"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		added   int
		limited int
	)
	for h, s := range []*Etcd{a, b} {
		wg.Go(func() {
			for i := range MaxCredentials {
				// Both hosts try the same env vars: only one may win each.
				c := testCredential("limit", fmt.Sprintf("h%d-c%02d", h, i), fmt.Sprintf("KEY_%02d", i))
				err := s.AddCredential(c, []byte(secretA))
				mu.Lock()
				switch {
				case err == nil:
					added++
				case errors.Is(err, ErrExists) || errors.Is(err, ErrLimit):
					limited++
				default:
					t.Errorf("add: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	mustSync(t, a)
	mustSync(t, b)
	creds, err := b.Credentials("limit")
	if err != nil {
		t.Fatal(err)
	}
	envs := map[string]bool{}
	for _, c := range creds {
		if envs[c.Env] {
			t.Errorf("env %s used twice", c.Env)
		}
		envs[c.Env] = true
	}
	if len(creds) != added || added > MaxCredentials {
		t.Errorf("%d credentials stored, %d adds succeeded; limit %d", len(creds), added, MaxCredentials)
	}
	t.Logf("%d adds succeeded, %d refused", added, limited)
}

// BenchmarkEtcdPropagation measures how long a rotation on one host takes
// to reach another's watcher, on a three-member cluster on loopback:
//
//	go test -run '^$' -bench EtcdPropagation -benchtime 100x ./pkg/vault/
func BenchmarkEtcdPropagation(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	key := make([]byte, keySize)
	cfg := EtcdConfig{Endpoints: cluster.Endpoints()}
	hosts := make([]*Etcd, 2)
	for i := range hosts {
		s, err := OpenEtcd(cfg, key)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		hosts[i] = s
	}
	a, other := hosts[0], hosts[1]
	if err := a.CreateVault("bench"); err != nil {
		b.Fatal(err)
	}
	if err := a.AddCredential(testCredential("bench", "c", "KEY_C"), []byte(secretA)); err != nil {
		b.Fatal(err)
	}
	seen := make(chan time.Time, 1)
	defer other.Watch(func(c Change) {
		if c.Kind == ChangeRotate {
			seen <- time.Now()
		}
	})()

	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := a.RotateCredential("bench", "c", []byte([]string{secretA, secretB}[i%2])); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-seen).Sub(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99-ms")
}

// percentile returns the p-th percentile of ds by nearest rank; it sorts ds.
func percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	rank := (len(ds)*p + 99) / 100 // ceil(len*p/100), at least 1 for p > 0
	return ds[max(rank, 1)-1]
}

// TestEtcdTLS opens the store from a URL with client certificate files on
// a cluster that requires them, and archives (which dials each member on
// its own) over TLS too.
func TestEtcdTLS(t *testing.T) {
	cluster := etcdtest.StartTLS(t, 1)
	f := cluster.TLS
	key := randomKey(t)
	host := strings.TrimPrefix(cluster.Members[0].ClientURL, "https://")
	cfg, err := ParseEtcdURL(fmt.Sprintf("etcd://%s?cert=%s&key=%s&ca=%s&prefix=/tls/",
		host, f.ClientCert, f.ClientKey, f.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	s := openEtcd(t, cfg, key)
	mustAddStore(t, s, testCredential("prod", "openai", "OPENAI_API_KEY"), secretA)
	if !secretIs(s, "prod", "openai", secretA) {
		t.Fatal("Secret over TLS failed")
	}
	if err := s.ArchiveVault("prod"); err != nil {
		t.Fatalf("archive over TLS: %v", err)
	}

	// Without a client certificate the cluster refuses the connection.
	noCert := EtcdConfig{Endpoints: []string{host}, CAFile: f.CAFile, DialTimeout: time.Second}
	if s2, err := OpenEtcd(noCert, key); err == nil {
		s2.Close()
		t.Error("OpenEtcd without a client certificate succeeded")
	}
}
