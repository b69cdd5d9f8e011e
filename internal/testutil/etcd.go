package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// EtcdEnv names the etcd server binary tests start; unset, "etcd" is looked
// up on PATH (Debian's etcd-server installs /usr/bin/etcd; see
// scripts/install-etcd.sh).
const EtcdEnv = "KEYGATE_ETCD"

// RequireEtcd returns the path of the etcd server binary, or skips t if
// there is none. When KEYGATE_REQUIRE_ROOT is set (CI sets it), a missing
// binary fails the test instead, like RequireRoot.
func RequireEtcd(t testing.TB) string {
	t.Helper()
	name := os.Getenv(EtcdEnv)
	if name == "" {
		name = "etcd"
	}
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("KEYGATE_REQUIRE_ROOT") != "" {
		t.Fatalf("test needs an etcd server (%v) and KEYGATE_REQUIRE_ROOT is set; run scripts/install-etcd.sh", err)
	}
	t.Skipf("test needs an etcd server: %v (scripts/install-etcd.sh installs one)", err)
	return ""
}
