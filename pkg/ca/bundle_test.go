package ca

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteBundle(t *testing.T) {
	c := mustCA(t)
	sysDir := t.TempDir()
	// A system bundle holding one other root and no final newline.
	otherRoot := bytes.TrimSuffix(mustCA(t).CertPEM(), []byte("\n"))
	writeTestFile(t, filepath.Join(sysDir, "roots.pem"), otherRoot)
	missing := filepath.Join(sysDir, "missing.pem")

	tests := []struct {
		name      string
		rootPaths []string
		wantRoots int // system roots expected before the keygate CA
		wantErr   bool
	}{
		{"first path exists", []string{filepath.Join(sysDir, "roots.pem"), missing}, 1, false},
		{"later path exists", []string{missing, filepath.Join(sysDir, "roots.pem")}, 1, false},
		{"no path exists", []string{missing}, 0, false},
		{"unreadable path", []string{sysDir}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bundle.pem")
			err := c.writeBundle(path, tt.rootPaths)
			if tt.wantErr {
				if err == nil {
					t.Fatal("writeBundle succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("writeBundle: %v", err)
			}
			checkBundle(t, c, path, tt.wantRoots)
		})
	}
}

// TestWriteBundleSystem runs against whatever system bundle this host has.
func TestWriteBundleSystem(t *testing.T) {
	c := mustCA(t)
	path := filepath.Join(t.TempDir(), "bundle.pem")
	if err := c.WriteBundle(path); err != nil {
		t.Fatalf("WriteBundle: %v", err)
	}
	checkBundle(t, c, path, -1)
}

// checkBundle checks that path is a 0644 PEM file of certificates ending in
// c's certificate, preceded by wantRoots others (any number if negative).
func checkBundle(t *testing.T, c *CA, path string, wantRoots int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Errorf("mode = %v, want 0644", fi.Mode())
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, c.CertPEM()) {
		t.Error("bundle does not contain the CA PEM")
	}
	certs := parsePEMCerts(t, data)
	if len(certs) == 0 || !bytes.Equal(certs[len(certs)-1].Raw, c.Certificate().Raw) {
		t.Fatal("bundle does not end with the CA certificate")
	}
	if wantRoots >= 0 && len(certs)-1 != wantRoots {
		t.Errorf("bundle has %d system roots, want %d", len(certs)-1, wantRoots)
	}
}
