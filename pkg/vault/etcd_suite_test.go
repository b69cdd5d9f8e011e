package vault_test

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/keygate/keygate/internal/etcdtest"
	"github.com/keygate/keygate/pkg/vault"
	"github.com/keygate/keygate/pkg/vault/storetest"
)

func TestEtcdStore(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	n := 0
	storetest.Run(t, func(t *testing.T) vault.Store {
		// A prefix of its own gives each test an empty store.
		n++
		cfg := vault.EtcdConfig{Endpoints: cluster.Endpoints(), Prefix: fmt.Sprintf("/suite-%d/", n)}
		s, err := vault.OpenEtcd(cfg, key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
