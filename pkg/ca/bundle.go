package ca

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/keygate/keygate/internal/fsutil"
)

// systemRootPaths are the distributions' system trust bundles, in the order
// WriteBundle tries them: Debian/Ubuntu, RHEL/Fedora, Alpine.
var systemRootPaths = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/cert.pem",
}

// WriteBundle writes the trust bundle sandboxes install: the host's system
// roots, read from the first of the usual Debian, RHEL and Alpine bundle paths
// that exists (none if no path exists), followed by the keygate CA. The file
// is replaced atomically and gets mode 0644.
//
// Keeping the system roots lets sandboxes still reach hosts the proxy passes
// through untouched.
func (c *CA) WriteBundle(path string) error {
	return c.writeBundle(path, systemRootPaths)
}

// writeBundle is WriteBundle with the candidate system bundles given.
func (c *CA) writeBundle(path string, rootPaths []string) error {
	roots, err := readFirst(rootPaths)
	if err != nil {
		return err
	}

	var buf bytes.Buffer
	buf.Write(roots)
	if len(roots) > 0 && roots[len(roots)-1] != '\n' {
		buf.WriteByte('\n') // PEM blocks must start on their own line
	}
	buf.Write(c.certPEM)

	if err := fsutil.WriteFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("writing trust bundle: %w", err)
	}
	return nil
}

// readFirst returns the contents of the first file in paths that exists, or
// nil if none does. Any error other than absence is returned, so that an
// unreadable system bundle does not silently leave sandboxes without roots.
func readFirst(paths []string) ([]byte, error) {
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading system roots: %w", err)
		}
		return data, nil
	}
	return nil, nil
}
