package vault

import (
	"fmt"
	"io"
	"log/slog"
)

// redacted is what every printed form of a Secret shows.
const redacted = "[redacted]"

// Secret holds a decrypted secret. Its printed forms (String, GoString, every
// fmt verb, slog and JSON) are "[redacted]"; only Bytes returns the value.
// The zero Secret is empty.
type Secret struct {
	b []byte // never aliased by a caller: NewSecret and Bytes copy
}

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)

// NewSecret returns a Secret holding a copy of b.
func NewSecret(b []byte) Secret {
	return Secret{b: append([]byte(nil), b...)}
}

// Bytes returns a copy of the secret value; the caller owns it and may
// clear it when done.
func (s Secret) Bytes() []byte {
	return append([]byte(nil), s.b...)
}

// Len returns the length of the secret value in bytes.
func (s Secret) Len() int {
	return len(s.b)
}

// String returns "[redacted]".
func (s Secret) String() string {
	return redacted
}

// GoString returns "[redacted]", so %#v never shows the value.
func (s Secret) GoString() string {
	return redacted
}

// Format writes "[redacted]" for every verb and flag, including %x and %q,
// which would otherwise bypass String for a byte slice field.
func (s Secret) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, redacted)
}

// LogValue returns "[redacted]" for log/slog.
func (s Secret) LogValue() slog.Value {
	return slog.StringValue(redacted)
}

// MarshalJSON returns the JSON string "[redacted]", so a Secret embedded in
// an API response or audit record cannot leak.
func (s Secret) MarshalJSON() ([]byte, error) {
	return []byte(`"` + redacted + `"`), nil
}
