package proxy

import (
	"crypto/subtle"
	"slices"

	"github.com/keygate/keygate/pkg/vault"
)

// Secret is a credential's secret as the proxy uses it: the value it
// substitutes, and the forms of it redacted from responses. It is built
// once per secret version (the agent keeps it with the secret in its
// credential cache), so that a request neither copies the secret nor
// encodes it again. The embedded vault.Secret gives it the same printed
// forms: "[redacted]" for every fmt verb, slog and JSON.
type Secret struct {
	vault.Secret
	value string
	pats  [][]byte // redactedForms of value; nil if too short to redact
	spats []string // the same, for header values
}

// NewSecret returns s ready for the proxy.
func NewSecret(s vault.Secret) *Secret {
	b := s.Bytes()
	sec := &Secret{Secret: s, value: string(b)}
	clear(b)
	if len(sec.value) >= minRedactLen {
		for _, f := range encodings(sec.value) {
			if !slices.Contains(sec.spats, f) {
				sec.spats = append(sec.spats, f)
				sec.pats = append(sec.pats, []byte(f))
			}
		}
	}
	return sec
}

// Same reports whether s and o hold the same secret, in time that does not
// depend on where they differ.
func (s *Secret) Same(o *Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.value), []byte(o.value)) == 1
}
