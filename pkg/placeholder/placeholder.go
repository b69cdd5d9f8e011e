// Package placeholder makes the random stand-ins a sandbox sees instead of
// real secrets, and finds them in text.
//
// A placeholder is an optional operator-chosen prefix (so SDKs that check a
// key's shape accept it, e.g. "sk-"), the marker "kgph_", and 32 characters
// of base32: 160 random bits. Only the marker and what follows it identify
// a placeholder; the prefix is cosmetic.
package placeholder

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
)

// Marker starts the identifying part of every placeholder.
const Marker = "kgph_"

// bodyLen is the number of base32 characters after Marker (160 bits).
const bodyLen = 32

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// New returns a fresh placeholder with the given prefix.
func New(prefix string) (string, error) {
	if strings.Contains(prefix, Marker) {
		return "", fmt.Errorf("placeholder prefix %q must not contain %q", prefix, Marker)
	}
	var b [bodyLen * 5 / 8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return prefix + Marker + encoding.EncodeToString(b[:]), nil
}

// Token is one placeholder-shaped occurrence found in a string.
type Token struct {
	Start, End int    // byte offsets of the identifying part in the string
	ID         string // Marker plus body: the key used to look it up
	Valid      bool   // false when the marker is not followed by a full body
}

// Find returns every occurrence of Marker in s. Each is Valid when a full
// 32-character body follows; a truncated or malformed one is still
// reported, because a request carrying something placeholder-shaped that is
// not a live placeholder must be refused rather than forwarded.
func Find(s string) []Token {
	var out []Token
	for off := 0; ; {
		i := strings.Index(s[off:], Marker)
		if i < 0 {
			return out
		}
		start := off + i
		end := start + len(Marker)
		for end < len(s) && end-start-len(Marker) < bodyLen && isBody(s[end]) {
			end++
		}
		out = append(out, Token{
			Start: start,
			End:   end,
			ID:    s[start:end],
			Valid: end-start-len(Marker) == bodyLen,
		})
		off = end
	}
}

// Contains reports whether s holds Marker at all: the cheap test run on
// every header value before Find.
func Contains(s string) bool { return strings.Contains(s, Marker) }

func isBody(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '2' && c <= '7'
}
