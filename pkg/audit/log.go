package audit

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Log is an audit log. File is the implementation on a local file; a fleet
// engine that ships records elsewhere implements the same interface.
// All methods are safe for concurrent use.
type Log interface {
	// Append records r without waiting for it to reach stable storage.
	// It blocks while the log's queue is full and fails only if the log is
	// closed or broken, or r is invalid.
	Append(r Record) error

	// AppendSync records r and returns once it is durable, or when ctx
	// ends. After a ctx error the record may still be written.
	AppendSync(ctx context.Context, r Record) error

	// Query returns the records that match f, oldest first.
	Query(f Filter) ([]Record, error)

	// Verify checks the whole log and reports the first bad record. A log
	// that fails wraps ErrTampered in the error; other errors are I/O.
	Verify() (Report, error)

	// Close writes and syncs everything appended and releases the log.
	Close() error
}

var (
	// ErrTampered is wrapped by every error that reports a log or head
	// whose content does not verify: changed, reordered, removed or
	// unauthenticated records, or a key other than the one that wrote it.
	ErrTampered = errors.New("audit log does not verify")

	// ErrClosed is returned by a Log's methods after Close.
	ErrClosed = errors.New("audit log closed")

	// ErrInvalid is wrapped by errors about a record or key that cannot be
	// used: no kind, a time out of range, too much text, a short key.
	ErrInvalid = errors.New("invalid audit input")

	// ErrBroken is wrapped by the errors of a log whose file could not be
	// written or synced. Nothing more is appended: the operator fixes the
	// storage and restarts, and OpenFile repairs what the failure left.
	ErrBroken = errors.New("audit log broken")
)

// Filter selects records for Query. The zero Filter selects every record.
type Filter struct {
	Vault string    // only records of this vault; "" means any
	Since time.Time // only records with Time at or after Since; zero means any
	Kinds []Kind    // only records of these kinds; empty means any
	Limit int       // at most this many, the newest; 0 means no limit
}

// match reports whether r passes every condition of f but Limit.
func (f *Filter) match(r *Record) bool {
	if f.Vault != "" && r.Vault != f.Vault {
		return false
	}
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	return len(f.Kinds) == 0 || slices.Contains(f.Kinds, r.Kind)
}
