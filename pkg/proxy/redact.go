package proxy

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// minRedactLen is the shortest secret that is redacted.
// Shorter ones would match by chance and corrupt responses; a real API key
// is far longer.
const minRedactLen = 6

// redactChunk is how much of a response body is read at a time.
const redactChunk = 32 << 10

// redactor replaces secrets with the placeholders that stand for them in
// response headers and bodies, so that an upstream that echoes what it
// received (an echo endpoint, an error message quoting the key) cannot
// hand the secret back to the sandbox. Each secret is searched for as is
// and in the encodings it could be echoed in: base64 (standard and URL
// alphabets, padded or not), hex (either case), URL escaping and JSON
// string escaping.
//
// A secret base64-encoded inside a longer value (Basic credentials
// "user:secret" or "secret:x" echoed back) sits at one of three
// alignments; at each, the characters that depend on the secret's bits
// alone are searched for too (all but at most the first and last two
// characters of its encoding), so what is left once replaced cannot be
// decoded back to the secret.
type redactor struct {
	pats   [][]byte // searched for
	spats  []string // pats as strings, for header values
	repls  []string // what pats[i] becomes
	maxLen int      // longest pattern
}

// shownSecret is a credential's secret, which the upstream may know, and
// the placeholder the sandbox knows it by, which replaces it in the
// response.
type shownSecret struct {
	sec         *Secret
	as          string
	vault, cred string // the credential
}

// newRedactor builds a redactor for the secrets a request carried; it
// returns nil when there is nothing to redact. The patterns are the
// secrets' own, shared, not copied.
func newRedactor(shown []shownSecret) *redactor {
	var r *redactor
	for _, s := range shown {
		for i, form := range s.sec.spats {
			if r == nil {
				r = &redactor{}
			} else if slices.Contains(r.spats, form) {
				continue // two credentials with one secret
			}
			r.pats = append(r.pats, s.sec.pats[i])
			r.spats = append(r.spats, form)
			r.repls = append(r.repls, s.as)
			r.maxLen = max(r.maxLen, len(form))
		}
	}
	return r
}

// encodings returns the forms a secret is searched for in.
func encodings(s string) []string {
	b := []byte(s)
	forms := []string{
		s,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		url.QueryEscape(s),
		url.PathEscape(s),
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for k := range 3 {
			forms = append(forms, shiftedBase64(enc, b, k))
		}
	}
	// Inside a JSON string: quotes and backslashes escaped, <, > and &
	// escaped (\u003c, as encoding/json does) or not (as Python does), and
	// "/" as "\/" or not (PHP escapes it; AWS secret keys hold slashes).
	for _, html := range []bool{true, false} {
		var js bytes.Buffer
		e := json.NewEncoder(&js)
		e.SetEscapeHTML(html)
		if e.Encode(s) == nil {
			esc := strings.TrimSuffix(js.String(), "\n")
			esc = esc[1 : len(esc)-1]
			forms = append(forms, esc, strings.ReplaceAll(esc, "/", `\/`))
		}
	}
	return forms
}

// shiftedBase64 returns the part of the base64 encoding of b, when b
// starts k bytes (0, 1 or 2) into a 3-byte group, that depends on b's bits
// alone, whatever comes before or after it: output character i carries
// input bits [6i, 6i+6), and b holds bits [8k, 8(k+len(b))).
func shiftedBase64(enc *base64.Encoding, b []byte, k int) string {
	full := enc.EncodeToString(append(make([]byte, k), b...))
	return full[(8*k+5)/6 : 8*(k+len(b))/6]
}

// next finds the earliest match in b: its offset and pattern index, or -1.
func (r *redactor) next(b []byte) (at, pat int) {
	at, pat = -1, -1
	for i, p := range r.pats {
		limit := b
		if at >= 0 {
			limit = b[:min(len(b), at+len(p))] // only an earlier match can win
		}
		if j := bytes.Index(limit, p); j >= 0 && (at < 0 || j < at || j == at && len(p) > len(r.pats[pat])) {
			at, pat = j, i
		}
	}
	return at, pat
}

// replaceAll returns b with every match replaced.
func (r *redactor) replaceAll(b []byte) []byte {
	var out []byte
	for {
		at, pat := r.next(b)
		if at < 0 {
			if out == nil {
				return b
			}
			return append(out, b...)
		}
		out = append(out, b[:at]...)
		out = append(out, r.repls[pat]...)
		b = b[at+len(r.pats[pat]):]
	}
}

// headers redacts every header value in h. A value without a match is
// left as it is, without a copy.
func (r *redactor) headers(h http.Header) {
	for _, vs := range h {
		for i, v := range vs {
			if r.inString(v) {
				vs[i] = string(r.replaceAll([]byte(v)))
			}
		}
	}
}

// inString reports whether v holds any pattern.
func (r *redactor) inString(v string) bool {
	for _, p := range r.spats {
		if strings.Contains(v, p) {
			return true
		}
	}
	return false
}

// body wraps rc so that what is read from it is redacted. Matches that
// straddle two reads are found: a tail of each read that could begin a
// match is held back until more arrive, so memory stays bounded by the
// chunk size and everything else flows on at once.
// atEOF, if not nil, runs when the body is exhausted (trailers arrive
// then).
func (r *redactor) body(rc io.ReadCloser, atEOF func()) io.ReadCloser {
	return &redactingBody{rc: rc, s: stream{red: r}, buf: chunkPool.Get().(*[]byte), atEOF: atEOF}
}

// chunkPool holds the read buffers of redacted bodies: one per response
// otherwise, and most responses are small.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, redactChunk)
	return &b
}}

type redactingBody struct {
	rc    io.ReadCloser
	s     stream
	atEOF func()
	buf   *[]byte // from chunkPool; returned by Close
	out   []byte  // redacted, not yet returned
	spare []byte  // out's whole buffer, reused for every read
	err   error   // the underlying reader's final error, io.EOF included
}

func (b *redactingBody) Read(p []byte) (int, error) {
	for len(b.out) == 0 {
		if b.err != nil {
			if b.atEOF != nil {
				b.atEOF()
				b.atEOF = nil
			}
			return 0, b.err
		}
		if b.buf == nil {
			return 0, errBodyClosed
		}
		n, err := b.rc.Read(*b.buf)
		b.err = err
		b.spare = b.s.push(b.spare[:0], (*b.buf)[:n], err != nil)
		b.out = b.spare
	}
	n := copy(p, b.out)
	b.out = b.out[n:]
	return n, nil
}

// stream is one redacted byte stream (a body, a WebSocket message): bytes
// pushed in come out redacted, but for a tail that may still begin a
// match, which waits for the next push.
type stream struct {
	red *redactor
	in  []byte // pushed, not yet searched to the end
}

// push adds b to the stream and appends to out what can be passed on;
// with final, the stream ends and everything is passed on.
func (s *stream) push(out, b []byte, final bool) []byte {
	s.in = append(s.in, b...)
	if final {
		out = append(out, s.red.replaceAll(s.in)...)
		s.in = s.in[:0]
		return out
	}
	for {
		at, pat := s.red.next(s.in)
		if at < 0 {
			break
		}
		if at+s.red.maxLen > len(s.in) {
			// A longer form (padded base64 after unpadded) may still
			// match here once more arrives: decide on the next push.
			out = append(out, s.in[:at]...)
			s.in = append(s.in[:0], s.in[at:]...)
			return out
		}
		out = append(out, s.in[:at]...)
		out = append(out, s.red.repls[pat]...)
		s.in = s.in[at+len(s.red.pats[pat]):]
	}
	keep := s.red.partial(s.in)
	out = append(out, s.in[:len(s.in)-keep]...)
	// The tail moves to the front of the same buffer (copy handles the
	// overlap), so a long stream reuses one buffer instead of
	// allocating one per push.
	s.in = append(s.in[:0], s.in[len(s.in)-keep:]...)
	return out
}

// partial returns the length of the longest tail of b that is the start
// of some pattern: only those bytes must wait for the next read. Holding
// back no more than that is what lets a stream (server-sent events) flow
// through event by event.
func (r *redactor) partial(b []byte) int {
	for k := min(len(b), r.maxLen-1); k > 0; k-- {
		tail := b[len(b)-k:]
		for _, p := range r.pats {
			if len(p) > k && bytes.Equal(p[:k], tail) {
				return k
			}
		}
	}
	return 0
}

// errBodyClosed is returned by reads after Close.
var errBodyClosed = errors.New("redacted body closed")

func (b *redactingBody) Close() error {
	if b.buf != nil {
		chunkPool.Put(b.buf)
		b.buf = nil
	}
	return b.rc.Close()
}
