// Package ca owns keygate's host certificate authority and the leaf
// certificates the TLS-terminating proxy presents to sandboxes.
//
// Sandboxes trust exactly one extra root: the CA this package creates on the
// host's first start and loads on every later one. The proxy asks a Leaves
// cache for a certificate naming the host a sandbox dialled; the cache issues
// short-lived leaves signed by that CA and renews them before they expire.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/internal/fsutil"
)

// File names inside the directory given to LoadOrCreate.
const (
	certFile = "ca.pem"
	keyFile  = "ca-key.pem"
)

// caValidity is how long a newly created CA certificate is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// clockSkew is how far NotBefore is backdated on every certificate, so that a
// sandbox whose clock runs a little behind the host's still accepts it.
const clockSkew = time.Hour

// CA is a loaded certificate authority. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
}

// LoadOrCreate loads the CA from dir (ca.pem and ca-key.pem), or creates one
// there on first start. dir is created with mode 0700 if absent.
//
// A new CA has an ECDSA P-256 key, is self-signed with the common name
// "keygate host CA <hostname>", is valid for 10 years, may sign only leaves
// (CA:true, MaxPathLen 0, KeyUsage CertSign|CRLSign) and has a random 128-bit
// serial and no name constraints. ca-key.pem is written with mode 0600 and
// ca.pem with 0644; each is written to a temporary file, synced and renamed
// into place, so a crash never leaves a half-written file.
//
// The key is renamed into place before the certificate, so ca.pem existing
// means the CA is complete. A ca-key.pem without ca.pem is therefore a
// creation that was interrupted (no sandbox can trust a certificate that was
// never written) and is replaced by a new CA. A ca.pem without ca-key.pem is
// an error: the CA may already be trusted, and only an operator should decide
// to replace it.
func LoadOrCreate(dir string) (*CA, error) {
	certPath := filepath.Join(dir, certFile)
	_, err := os.Stat(certPath)
	switch {
	case err == nil:
		return load(dir)
	case errors.Is(err, fs.ErrNotExist):
		return create(dir)
	default:
		return nil, fmt.Errorf("checking for %s: %w", certPath, err)
	}
}

// CertPEM returns the CA certificate in PEM form. The caller may modify the
// returned slice.
func (c *CA) CertPEM() []byte {
	return bytes.Clone(c.certPEM)
}

// Certificate returns the parsed CA certificate. It is shared and must not be
// modified.
func (c *CA) Certificate() *x509.Certificate {
	return c.cert
}

// create generates a new CA and stores it in dir.
func create(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating ca directory: %w", err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ca key: %w", err)
	}
	der, err := selfSign(key, time.Now())
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding ca key: %w", err)
	}

	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, keyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing ca key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, certFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing ca certificate: %w", err)
	}

	return newCA(certPEM, key)
}

// selfSign returns the DER of a new self-signed CA certificate for key.
func selfSign(key *ecdsa.PrivateKey, now time.Time) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown" // the name is only a label for operators
	}

	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keygate host CA " + host},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // without it, MaxPathLen 0 means "unlimited"
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing ca certificate: %w", err)
	}
	return der, nil
}

// load reads an existing CA from dir and checks that it is usable.
func load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		return nil, fmt.Errorf("reading ca certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("reading ca key: %w", err)
	}

	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	return newCA(certPEM, key)
}

// parseKey decodes a PEM "PRIVATE KEY" block holding a PKCS #8 signing key.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("decoding %s: no PRIVATE KEY block", keyFile)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", keyFile, err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parsing %s: key type %T cannot sign", keyFile, parsed)
	}
	return key, nil
}

// newCA parses certPEM and checks that it is a current CA certificate
// matching key.
func newCA(certPEM []byte, key crypto.Signer) (*CA, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("decoding %s: no CERTIFICATE block", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", certFile, err)
	}
	if err := checkCA(cert, key); err != nil {
		return nil, err
	}

	// Keep only the first block: the file is ours, and trailing bytes would
	// otherwise leak into every bundle.
	return &CA{cert: cert, certPEM: pem.EncodeToMemory(block), key: key}, nil
}

// checkCA reports why cert cannot serve as the CA for key, or nil.
func checkCA(cert *x509.Certificate, key crypto.Signer) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("%s is not a ca certificate", certFile)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s lacks the cert-sign key usage", certFile)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%s does not match the public key in %s", keyFile, certFile)
	}
	if now := time.Now(); now.After(cert.NotAfter) {
		return fmt.Errorf("%s expired at %s; remove both files to create a new ca",
			certFile, cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// serialLimit is 2^128 - 1, so that randomSerial's results fit in 128 bits.
var serialLimit = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 128), big.NewInt(1))

// randomSerial returns a random serial number in [1, 2^128 - 1]; RFC 5280
// requires serials to be positive.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
