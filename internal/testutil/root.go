// Package testutil holds helpers shared by keygate's tests.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t unless the test runs as root. When KEYGATE_REQUIRE_ROOT
// is set (CI sets it), a missing root fails the test instead, so a CI run can
// never pass by skipping the kernel tests.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("KEYGATE_REQUIRE_ROOT") != "" {
		t.Fatal("test needs root and KEYGATE_REQUIRE_ROOT is set")
	}
	t.Skip("test needs root")
}
