// Package vault stores credentials for keygate: an operator groups them in
// named vaults, each credential pairing a secret with the environment
// variable a sandbox reads and the domains the secret may be sent to.
//
// Metadata (Credential, Info) never holds secret material and can be listed
// freely. A secret leaves the package only through Store.Secret, wrapped in a
// Secret whose printed forms are always "[redacted]".
//
// At rest every secret is sealed with AES-256-GCM under its own random data
// key, and the data key is wrapped under the master key (see crypto.go).
// Removing a credential, rotating it or archiving its vault rewrites the
// database file so that the dropped ciphertext cannot be read back from it.
package vault

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/placeholder"
)

// MaxCredentials is the most credentials one vault may hold.
const MaxCredentials = 20

// Sentinel errors. Every error the package returns for one of these
// conditions wraps the matching sentinel, so callers test with errors.Is.
var (
	// ErrNotFound means the vault or credential does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means the name (or, for credentials, the env var) is taken.
	// Archived vaults keep their names.
	ErrExists = errors.New("already exists")
	// ErrArchived means the vault was archived: its secrets are gone and it
	// accepts no changes.
	ErrArchived = errors.New("vault archived")
	// ErrLimit means the vault already holds MaxCredentials credentials.
	ErrLimit = errors.New("credential limit reached")
	// ErrInvalid means an argument failed validation.
	ErrInvalid = errors.New("invalid argument")
	// ErrDecrypt means stored material failed authentication: the master key
	// is not the one the store was created with, or the data was altered.
	ErrDecrypt = errors.New("decryption failed")
	// ErrUnavailable means a shared store could not be reached: for longer
	// than its grace period, so it no longer vouches for the secrets it
	// holds (Etcd.Secret), or for a change that needs it.
	ErrUnavailable = errors.New("store unreachable for longer than the grace period")
)

// Credential is a credential's metadata; it never holds the secret.
type Credential struct {
	Vault   string   `json:"vault"`
	Name    string   `json:"name"`
	Env     string   `json:"env"`              // environment variable the sandbox reads
	Domains []string `json:"domains"`          // approved domain patterns (pkg/domain syntax)
	Header  string   `json:"header,omitempty"` // optional "Name: fmt {}" template, "" = none
	// Prefix starts every placeholder of this credential, so SDKs that
	// check a key's shape ("sk-", "ghp_") accept it; "" = none.
	Prefix string `json:"placeholder_prefix,omitempty"`
	// Query enables substitution in the request's query string; off, a
	// placeholder in the URL is refused. Bodies are never substituted.
	Query   bool      `json:"query,omitempty"`
	Version uint64    `json:"version"` // 1 on add, +1 on each rotation
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"` // last rotation, or Created
}

// Info describes a vault.
type Info struct {
	Name        string     `json:"name"`
	Archived    bool       `json:"archived"`
	Created     time.Time  `json:"created"`
	ArchivedAt  *time.Time `json:"archived_at,omitempty"` // nil unless Archived
	Credentials int        `json:"credentials"`           // metadata records, kept after archiving
}

// maxNameLen is the longest vault or credential name.
const maxNameLen = 63

// maxEnvLen is the longest environment variable name a credential may use.
const maxEnvLen = 128

// ValidateName checks a vault or credential name: 1-63 characters of
// a-z, 0-9, '.', '_' and '-', starting with a letter or digit. The error
// starts with the quoted name, so callers prefix it with "vault " or
// "credential ".
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen || !isLowerAlnum(name[0]) {
		return fmt.Errorf("%q: %w: a name is 1-%d characters and starts with a-z or 0-9",
			name, ErrInvalid, maxNameLen)
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isLowerAlnum(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%q: %w: a name may only hold a-z, 0-9, '.', '_' and '-'",
				name, ErrInvalid)
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// reservedEnv lists variables a sandbox needs for itself: its search path and
// home, the dynamic loader, the TLS trust store that makes it accept the
// proxy's certificates, and proxy settings that would bypass transparent
// capture. They are compared in upper case, so "http_proxy" is caught too.
var reservedEnv = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "SHELL": true, "PWD": true,
	"TMPDIR": true, "IFS": true, "ENV": true, "BASH_ENV": true,
	"SSL_CERT_FILE": true, "SSL_CERT_DIR": true, "REQUESTS_CA_BUNDLE": true,
	"CURL_CA_BUNDLE": true, "NODE_EXTRA_CA_CERTS": true,
	"HTTP_PROXY": true, "HTTPS_PROXY": true, "ALL_PROXY": true, "NO_PROXY": true,
}

// reservedEnvPrefixes lists prefixes of reserved variables: LD_ covers the
// dynamic loader (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT, ...) and KEYGATE_
// is keygate's own namespace.
var reservedEnvPrefixes = []string{"LD_", "KEYGATE_"}

// ValidateEnv checks the environment variable name a credential is exposed
// under: a POSIX name ([A-Za-z_][A-Za-z0-9_]*) of at most 128 characters that
// is not one the sandbox itself depends on (PATH, HOME, LD_*, SSL_CERT_FILE,
// proxy variables, KEYGATE_*, ...).
func ValidateEnv(name string) error {
	if len(name) == 0 || len(name) > maxEnvLen {
		return fmt.Errorf("env %q: %w: length must be 1-%d", name, ErrInvalid, maxEnvLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return fmt.Errorf("env %q: %w: must match [A-Za-z_][A-Za-z0-9_]*", name, ErrInvalid)
		}
	}

	upper := strings.ToUpper(name)
	if reservedEnv[upper] {
		return fmt.Errorf("env %q: %w: reserved for the sandbox itself", name, ErrInvalid)
	}
	for _, p := range reservedEnvPrefixes {
		if strings.HasPrefix(upper, p) {
			return fmt.Errorf("env %q: %w: names starting with %s are reserved", name, ErrInvalid, p)
		}
	}
	return nil
}

// Validate checks every field an operator sets: vault and credential names,
// env var, at least one valid domain pattern and, if set, the header
// template. Version and timestamps are the store's business and not checked.
func (c Credential) Validate() error {
	if err := ValidateName(c.Vault); err != nil {
		return fmt.Errorf("vault %w", err)
	}
	if err := ValidateName(c.Name); err != nil {
		return fmt.Errorf("vault %q: credential %w", c.Vault, err)
	}
	if err := c.validateFields(); err != nil {
		return fmt.Errorf("vault %q: credential %q: %w", c.Vault, c.Name, err)
	}
	return nil
}

func (c Credential) validateFields() error {
	if err := ValidateEnv(c.Env); err != nil {
		return err
	}
	if len(c.Domains) == 0 {
		return fmt.Errorf("%w: at least one domain is required", ErrInvalid)
	}
	for _, d := range c.Domains {
		if err := domain.ValidatePattern(d); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if err := validatePrefix(c.Prefix); err != nil {
		return err
	}
	if c.Header != "" {
		return validateHeader(c.Header)
	}
	return nil
}

// maxPrefixLen is the longest placeholder prefix.
const maxPrefixLen = 32

// validatePrefix checks a placeholder prefix: up to 32 characters of
// A-Z, a-z, 0-9, '-' and '_', the characters key formats use, so that the
// placeholder stays one token in every header syntax. It may not contain
// the placeholder marker, which would make the prefix itself look like a
// placeholder.
func validatePrefix(p string) error {
	if len(p) > maxPrefixLen {
		return fmt.Errorf("placeholder prefix %q: %w: at most %d characters", p, ErrInvalid, maxPrefixLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("placeholder prefix %q: %w: only A-Z, a-z, 0-9, '-' and '_'", p, ErrInvalid)
		}
	}
	if strings.Contains(p, placeholder.Marker) {
		return fmt.Errorf("placeholder prefix %q: %w: must not contain %s", p, ErrInvalid, placeholder.Marker)
	}
	return nil
}

// forbiddenHeaders are headers the proxy owns: injecting a secret into them
// would change how the request is routed or framed.
var forbiddenHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
}

// validateHeader checks a header template of the form "Name: text {}": a
// valid HTTP field name, a colon, and a value holding exactly one "{}" where
// the secret goes, with no control characters.
func validateHeader(tmpl string) error {
	name, value, ok := strings.Cut(tmpl, ":")
	if !ok || !isToken(name) {
		return fmt.Errorf("header %q: %w: want \"Name: text with {}\"", tmpl, ErrInvalid)
	}
	if forbiddenHeaders[strings.ToLower(name)] {
		return fmt.Errorf("header %q: %w: %s is set by the proxy", tmpl, ErrInvalid, name)
	}
	if strings.Count(value, "{}") != 1 {
		return fmt.Errorf("header %q: %w: the value must contain {} exactly once", tmpl, ErrInvalid)
	}
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 && value[i] != '\t' || value[i] == 0x7f {
			return fmt.Errorf("header %q: %w: control character in value", tmpl, ErrInvalid)
		}
	}
	return nil
}

// isToken reports whether s is an HTTP field name (RFC 9110 token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

// vaultError prefixes err with the vault it concerns.
func vaultError(vault string, err error) error {
	return fmt.Errorf("vault %q: %w", vault, err)
}

// credError prefixes err with the vault and credential it concerns.
func credError(vault, name string, err error) error {
	return fmt.Errorf("vault %q: credential %q: %w", vault, name, err)
}
