package vault_test

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/pkg/vault"
	"github.com/keygate/keygate/pkg/vault/storetest"
)

func TestBoltStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			t.Fatal(err)
		}
		s, err := vault.OpenBolt(filepath.Join(t.TempDir(), "vault.db"), key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}
