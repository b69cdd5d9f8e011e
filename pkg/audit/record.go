package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind says what a Record records.
type Kind string

// Kinds of record keygate writes. Other non-empty kinds are accepted, so a
// new event needs no change here, but readers filter on these names.
const (
	KindVaultCreate      Kind = "vault.create"
	KindVaultArchive     Kind = "vault.archive" // secrets purged; records stay
	KindCredentialAdd    Kind = "credential.add"
	KindCredentialRotate Kind = "credential.rotate"
	KindCredentialRemove Kind = "credential.remove"
	KindRequestInject    Kind = "request.inject" // a secret was put into a request
	KindRequestDeny      Kind = "request.deny"   // a request was refused; Reason says why
	KindDNSDeny          Kind = "dns.deny"       // the resolver refused a name
	KindSandboxCreate    Kind = "sandbox.create"
	KindSandboxRemove    Kind = "sandbox.remove"
)

// Limits on one record. They keep a line small enough for readers to hold
// whole; a record that exceeds them is refused by Append, not cut.
const (
	maxKindBytes = 64
	maxTextBytes = 16 << 10 // all string fields together, before JSON escaping
	maxLineBytes = 1 << 20  // longest line a reader accepts; escaping grows text ≤6x
)

// Pieces of the line format.
const (
	lineEnd       = '\n'
	hashMember    = `,"hash":"` // how the hash member, always last, begins
	hashMemberEnd = `"}`        // and how the line continues after the hash
)

// Record is one audit event. Append fills Seq, Prev and Hash, and Time if it
// is zero; the caller sets the rest. Empty fields are left out of the log.
//
// No field is meant for a secret, a header value or a query string, and none
// may carry one: Detail and Reason are free text that ends up on disk and in
// API responses, so they must be written from names and fixed messages only.
type Record struct {
	Seq        uint64    `json:"seq"`                   // 1-based, contiguous; set by the log
	Time       time.Time `json:"time"`                  // UTC; zero means the time of Append
	Kind       Kind      `json:"kind"`                  // required
	Actor      string    `json:"actor,omitempty"`       // "uid:0" for an API caller, or a sandbox id
	Sandbox    string    `json:"sandbox,omitempty"`     // sandbox id
	Vault      string    `json:"vault,omitempty"`       // vault name
	Credential string    `json:"credential,omitempty"`  // credential name, never its value
	Host       string    `json:"host,omitempty"`        // upstream host name
	Method     string    `json:"method,omitempty"`      // HTTP method
	Path       string    `json:"path,omitempty"`        // request path without query; Append cuts at '?'
	Status     int       `json:"status,omitempty"`      // HTTP status answered; 0 if none
	Reason     string    `json:"reason,omitempty"`      // why a request or name was denied
	Detail     string    `json:"detail,omitempty"`      // anything else; no secrets
	DurationMS int64     `json:"duration_ms,omitempty"` // how long the request took
	Node       string    `json:"node,omitempty"`        // host chain in an Etcd log; set by it, "" in a File
	Prev       string    `json:"prev"`                  // hash of the previous record; set by the log
	Hash       string    `json:"hash,omitempty"`        // this record's hash; set by the log
}

// normalize prepares a caller's record for the log: it drops what the log
// sets, stamps the time and removes a query the caller left on Path, so that
// query values never reach the disk even by mistake. It also makes sure the
// record decodes back to itself, which the verifier relies on.
func (r Record) normalize(now time.Time) Record {
	r.Seq, r.Node, r.Prev, r.Hash = 0, "", "", ""
	if r.Time.IsZero() {
		r.Time = now
	}
	// UTC and no monotonic reading: what a decoded time looks like.
	r.Time = r.Time.UTC().Round(0)
	r.Path, _, _ = strings.Cut(r.Path, "?")

	// encoding/json writes invalid UTF-8 as the escape \ufffd but a
	// decoded U+FFFD as the raw character, so such a record would not
	// re-encode to its own line. Replacing it first keeps the form fixed.
	for _, s := range []*string{&r.Actor, &r.Sandbox, &r.Vault, &r.Credential,
		&r.Host, &r.Method, &r.Path, &r.Reason, &r.Detail} {
		*s = strings.ToValidUTF8(*s, string(utf8.RuneError))
	}
	r.Kind = Kind(strings.ToValidUTF8(string(r.Kind), string(utf8.RuneError)))
	return r
}

// validate reports whether r can be encoded and is of a reasonable size.
func (r *Record) validate() error {
	if r.Kind == "" || len(r.Kind) > maxKindBytes {
		return fmt.Errorf("%w: kind %q", ErrInvalid, r.Kind)
	}
	// encoding/json refuses years that RFC 3339 cannot write.
	if y := r.Time.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: time %v out of range", ErrInvalid, r.Time)
	}
	n := len(r.Actor) + len(r.Sandbox) + len(r.Vault) + len(r.Credential) +
		len(r.Host) + len(r.Method) + len(r.Path) + len(r.Reason) + len(r.Detail)
	if n > maxTextBytes {
		return fmt.Errorf("%w: %d bytes of text, limit %d", ErrInvalid, n, maxTextBytes)
	}
	return nil
}

// encodeBody returns the canonical encoding of r without its hash: the
// bytes the HMAC covers.
func encodeBody(r Record) ([]byte, error) {
	r.Hash = ""
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return body, nil
}

// appendLine appends to dst the log line, newline included, of a record
// whose body is body and whose hash is hash. Hash is the last field of
// Record and needs no escaping, so this is what json.Marshal produces for
// the whole record; the verifier holds every stored line to it.
func appendLine(dst, body []byte, hash string) []byte {
	dst = append(dst, body[:len(body)-1]...) // without the closing '}'
	dst = append(dst, hashMember...)
	dst = append(dst, hash...)
	dst = append(dst, hashMemberEnd...)
	return append(dst, lineEnd)
}

// decodeLine parses one stored line, newline included, and checks that it
// is in canonical form. It returns the record and the body its HMAC covers,
// or the reason the line is bad.
func decodeLine(line []byte) (Record, []byte, *Failure) {
	var r Record
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, nil, &Failure{Reason: ReasonUnparsable, Detail: err.Error()}
	}

	body, err := encodeBody(r)
	if err != nil {
		return Record{}, nil, &Failure{Reason: ReasonUnparsable, Detail: err.Error()}
	}
	if !bytes.Equal(appendLine(nil, body, r.Hash), line) {
		return Record{}, nil, &Failure{Reason: ReasonNotCanonical}
	}
	return r, body, nil
}
