package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testKey returns the audit key of a fixed master key.
func testKey(t testing.TB) []byte {
	t.Helper()
	key, err := DeriveKey(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// testPath returns the path of a log in a fresh directory.
func testPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "audit.log")
}

// mustOpen opens the log at path and closes it at the end of the test.
func mustOpen(t testing.TB, path string) *File {
	t.Helper()
	l, err := OpenFile(path, testKey(t), Options{})
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// baseTime is the time of the first sample record.
var baseTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// sample returns record i of a varied, deterministic set.
func sample(i int) Record {
	kinds := []Kind{KindVaultCreate, KindCredentialAdd, KindRequestInject, KindRequestDeny, KindSandboxCreate}
	vaults := []string{"ci", "prod"}
	return Record{
		Time:       baseTime.Add(time.Duration(i) * time.Minute),
		Kind:       kinds[i%len(kinds)],
		Actor:      "uid:0",
		Sandbox:    "sb-1",
		Vault:      vaults[i%len(vaults)],
		Credential: "github",
		Host:       "api.github.com",
		Method:     "GET",
		Path:       "/repos",
		Status:     200,
		DurationMS: int64(i),
	}
}

// writeLog creates a closed log of n sample records at a fresh path and
// returns the path.
func writeLog(t testing.TB, n int) string {
	t.Helper()
	path := testPath(t)
	l, err := OpenFile(path, testKey(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// readLines returns the lines of the file at path, '\n' included.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

// writeFile replaces the file at path with b.
func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
