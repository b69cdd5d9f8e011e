package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	created, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	loaded, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("reloading: %v", err)
	}

	if !bytes.Equal(created.Certificate().Raw, loaded.Certificate().Raw) {
		t.Error("reloaded certificate differs from the created one")
	}
	if !bytes.Equal(created.CertPEM(), loaded.CertPEM()) {
		t.Error("reloaded CertPEM differs from the created one")
	}
	if !loaded.key.Public().(*ecdsa.PublicKey).Equal(created.key.Public()) {
		t.Error("reloaded key differs from the created one")
	}
}

func TestLoadOrCreateModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}

	tests := []struct {
		name string
		path string
		want fs.FileMode
	}{
		{"directory", dir, fs.ModeDir | 0o700},
		{"key", filepath.Join(dir, keyFile), 0o600},
		{"certificate", filepath.Join(dir, certFile), 0o644},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.want {
				t.Errorf("mode = %v, want %v", fi.Mode(), tt.want)
			}
		})
	}

	// No temporary files may be left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2", len(entries))
	}
}

func TestNewCAFields(t *testing.T) {
	before := time.Now()
	cert := mustCA(t).Certificate()

	host, _ := os.Hostname()
	if want := "keygate host CA " + host; cert.Subject.CommonName != want {
		t.Errorf("CN = %q, want %q", cert.Subject.CommonName, want)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("basic constraints: valid=%v ca=%v maxpath=%d zero=%v",
			cert.BasicConstraintsValid, cert.IsCA, cert.MaxPathLen, cert.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; cert.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", cert.KeyUsage, want)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if n := cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", n)
	}
	if len(cert.PermittedDNSDomains)+len(cert.ExcludedDNSDomains)+len(cert.PermittedIPRanges) > 0 {
		t.Error("CA has name constraints")
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if got := cert.NotAfter.Sub(before); got < caValidity-time.Minute || got > caValidity+time.Minute {
		t.Errorf("valid for %v from now, want %v", got, caValidity)
	}
}

func TestLoadOrCreateStates(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string // empty: LoadOrCreate must succeed
	}{
		{
			name: "key without certificate is replaced",
			setup: func(t *testing.T, dir string) {
				writeTestFile(t, filepath.Join(dir, keyFile), []byte("half-created"))
			},
		},
		{
			name: "certificate without key",
			setup: func(t *testing.T, dir string) {
				mustLoadOrCreate(t, dir)
				removeTestFile(t, filepath.Join(dir, keyFile))
			},
			wantErr: "reading ca key",
		},
		{
			name: "corrupt certificate",
			setup: func(t *testing.T, dir string) {
				mustLoadOrCreate(t, dir)
				writeTestFile(t, filepath.Join(dir, certFile), []byte("garbage"))
			},
			wantErr: "no CERTIFICATE block",
		},
		{
			name: "corrupt key",
			setup: func(t *testing.T, dir string) {
				mustLoadOrCreate(t, dir)
				writeTestFile(t, filepath.Join(dir, keyFile), []byte("garbage"))
			},
			wantErr: "no PRIVATE KEY block",
		},
		{
			name: "key of another CA",
			setup: func(t *testing.T, dir string) {
				mustLoadOrCreate(t, dir)
				other := t.TempDir()
				mustLoadOrCreate(t, other)
				key, err := os.ReadFile(filepath.Join(other, keyFile))
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, filepath.Join(dir, keyFile), key)
			},
			wantErr: "does not match",
		},
		{
			name:    "expired certificate",
			setup:   writeExpiredCA,
			wantErr: "expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			_, err := LoadOrCreate(dir)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("LoadOrCreate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("LoadOrCreate error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCertPEMIsCopy(t *testing.T) {
	c := mustCA(t)
	got := c.CertPEM()
	got[0] = 'X'
	if bytes.Equal(got, c.CertPEM()) {
		t.Error("modifying CertPEM's result changed the CA")
	}
	if block, _ := pem.Decode(c.CertPEM()); block == nil {
		t.Error("CertPEM is not PEM")
	}
}

func mustLoadOrCreate(t *testing.T, dir string) {
	t.Helper()
	if _, err := LoadOrCreate(dir); err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func removeTestFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// writeExpiredCA stores in dir a CA whose validity ended a year ago.
func writeExpiredCA(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := selfSign(key, time.Now().Add(-caValidity-365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	writeTestFile(t, filepath.Join(dir, certFile), certPEM)
	writeTestFile(t, filepath.Join(dir, keyFile), keyPEM)
}
