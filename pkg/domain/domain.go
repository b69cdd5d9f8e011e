// Package domain normalises host names and matches them against the domain
// patterns an operator approves for a credential or allows for a sandbox.
//
// The matching rule, which every other package relies on:
//
//   - "api.example.com" matches exactly that name and nothing else.
//   - "*.example.com" matches a name with exactly one more label in front of
//     example.com ("a.example.com"), never the bare "example.com" and never a
//     deeper name ("a.b.example.com").
//   - "**.example.com" matches any name with one or more labels in front of
//     example.com, still never the bare suffix.
//
// Comparison is case-insensitive and ignores one trailing dot, so that names
// taken from DNS questions, TLS SNI and HTTP Host headers compare equal.
package domain

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error ValidatePattern and ValidateName return.
var ErrInvalid = errors.New("invalid domain")

// Normalize lowercases name and strips one trailing dot.
func Normalize(name string) string {
	name = strings.TrimSuffix(name, ".")
	return strings.ToLower(name)
}

// Match reports whether host is covered by pattern under the package rule.
// Both are normalised first; an empty host never matches.
func Match(pattern, host string) bool {
	pattern, host = Normalize(pattern), Normalize(host)
	if host == "" || pattern == "" {
		return false
	}

	switch {
	case strings.HasPrefix(pattern, "**."):
		suffix := pattern[2:] // keeps the leading dot
		return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:]
		if !strings.HasSuffix(host, suffix) {
			return false
		}
		label := host[:len(host)-len(suffix)]
		return label != "" && !strings.Contains(label, ".")
	default:
		return host == pattern
	}
}

// MatchAny reports whether any of patterns matches host.
func MatchAny(patterns []string, host string) bool {
	for _, p := range patterns {
		if Match(p, host) {
			return true
		}
	}
	return false
}

// ValidateName checks that name is a plausible DNS host name: labels of
// letters, digits and hyphens, at most 63 bytes each, 253 in all.
func ValidateName(name string) error {
	name = Normalize(name)
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: %q: length must be 1-253", ErrInvalid, name)
	}
	for _, label := range strings.Split(name, ".") {
		if err := validateLabel(label); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalid, name, err)
		}
	}
	return nil
}

// ValidatePattern checks an approved-domain pattern: a host name, optionally
// preceded by "*." or "**.". The suffix after a wildcard must have at least
// two labels, so "*.com" is refused.
func ValidatePattern(pattern string) error {
	rest := Normalize(pattern)
	wild := false
	if after, ok := strings.CutPrefix(rest, "**."); ok {
		rest, wild = after, true
	} else if after, ok := strings.CutPrefix(rest, "*."); ok {
		rest, wild = after, true
	}
	if wild && !strings.Contains(rest, ".") {
		return fmt.Errorf("%w: %q: a wildcard needs a suffix of two or more labels", ErrInvalid, pattern)
	}
	return ValidateName(rest)
}

func validateLabel(label string) error {
	if label == "" || len(label) > 63 {
		return errors.New("each label must be 1-63 characters")
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return fmt.Errorf("label %q has a character outside a-z, 0-9, '-', '_'", label)
		}
	}
	if label[0] == '-' || label[len(label)-1] == '-' {
		return fmt.Errorf("label %q starts or ends with '-'", label)
	}
	return nil
}
