// Package audit is keygate's append-only, tamper-evident audit log.
//
// Every change to a vault or credential, every injection of a secret into a
// sandbox's request and every denial is recorded as a Record. Records carry
// names, never values: there is no field for a header value, a secret or a
// query string, and Path is stored without its query.
//
// # File format
//
// OpenFile keeps the log in one file, one JSON object per line, each line
// ended by '\n':
//
//	{"seq":1,"time":"2025-01-02T03:04:05.123456789Z","kind":"vault.create","actor":"uid:0","vault":"ci","prev":"00…00","hash":"9f…3c"}
//
// Fields appear in the order of the Record struct, empty optional fields are
// left out, and the line is exactly what encoding/json produces for the
// Record (with its HTML escaping; Append first replaces invalid UTF-8), so a
// record has one canonical byte form.
// seq starts at 1 and grows by one per line; time is RFC 3339 with
// nanoseconds in UTC; prev and hash are 64 lowercase hex digits.
//
// # Chain
//
// Each record's hash is
//
//	HMAC-SHA256(K, prev || body)
//
// where prev is the previous record's hash as 32 raw bytes (32 zero bytes
// for seq 1), body is the record's line without its ",\"hash\":…" member
// (the JSON encoding of the Record with Hash empty), and K is the audit key
// from DeriveKey: HKDF-SHA256 of keygate's master key with info
// "keygate audit v1". Without K nobody can compute a hash, so an attacker who
// can edit the file cannot forge, change, reorder or delete a record and fix
// the chain up afterwards.
//
// The verifier decodes each line, re-encodes it and requires the result to
// equal the stored bytes before it checks seq, prev and hash. A changed byte
// therefore fails one of those checks: it breaks the JSON, or the line is no
// longer canonical (whitespace, escapes, key case, unknown or duplicate
// fields, a '\r' before the newline), or the decoded record differs and its
// HMAC no longer matches.
//
// # Head file
//
// Deleting whole records from the end of the log leaves a valid chain, so a
// small head file next to the log (path + ".head") names the last durable
// record: its seq and hash, under an HMAC of its own. It is replaced
// atomically (temporary file, fsync, rename) after every group commit, and
// the verifier reports a log that is shorter than its head, or whose record
// at the head's seq has another hash.
//
// The head detects truncation only while it is intact. An attacker who can
// write to the state directory and who deletes records from the end can also
// put back an older head saved earlier, or truncate the log right after
// keygated replaced the head; neither is detectable from the files alone.
// Nor can the files show that a whole log and head pair were replaced by an
// older copy. Shipping records off the host as they are written is what
// closes those gaps: the Etcd log (etcd.go) keeps one such chain per host
// in the fleet's etcd cluster, in the same line format.
//
// # Durability and crash repair
//
// Append queues a record for a background writer and returns; AppendSync
// waits until the record is on stable storage. The writer takes everything
// queued, writes it with one write and makes it durable with one fsync
// (group commit), so the cost of an fsync is shared by every record that
// arrived while the previous one ran.
//
// If keygated dies during a write, the log can end in an incomplete line:
// bytes after the last '\n'. OpenFile removes such a tail, and only such a
// tail, and only when the head does not name a record in it. That is
// repair, not tampering: a write that was cut short never reached its
// fsync, so no caller was told those bytes were durable. Anything else that
// does not verify (a bad line in the middle, a complete last line that is
// wrong, a log shorter than its head) is left untouched for Verify to
// report, and OpenFile refuses to append to a log whose tail does not agree
// with the head. So a changed final '\n', which makes the last record look
// torn, is not repaired away: the head names that record, OpenFile refuses
// the log and Verify reports it shorter than its head.
//
// The repair assumes what ext4 and XFS provide: bytes written before an
// fsync that completed survive a crash, and later bytes are lost from the
// end, not from the middle.
//
// # Growth
//
// The log grows by roughly 300 bytes per record. With
// Options.MaxFileBytes it is rotated into segments that continue one chain
// (segment.go), so no single file grows without bound; Query and Verify
// still read every record of every segment.
package audit
