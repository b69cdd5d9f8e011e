package proxy

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/keygate/keygate/pkg/lograte"
	"github.com/keygate/keygate/pkg/vault"
)

// redactorFor is the redactor of a request that carried each secret of
// m, shown as its value.
func redactorFor(m map[string]string) *redactor {
	var shown []shownSecret
	for secret, ph := range m {
		shown = append(shown, shownSecret{sec: NewSecret(vault.NewSecret([]byte(secret))), as: ph})
	}
	return newRedactor(shown)
}

// injectionShowing is a request's injection that sent secret, known to
// the sandbox as ph, ready for its response.
func injectionShowing(secret, ph string) *injection {
	in := &injection{shown: []shownSecret{{sec: NewSecret(vault.NewSecret([]byte(secret))), as: ph}}}
	in.red = newRedactor(in.shown)
	return in
}

func TestRedactorForms(t *testing.T) {
	const secret = "sk-live/SECRET+value=="
	const ph = "kgph_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	r := redactorFor(map[string]string{secret: ph})
	forms := map[string]string{
		"raw":           secret,
		"base64":        base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64 raw":    base64.RawStdEncoding.EncodeToString([]byte(secret)),
		"base64 url":    base64.URLEncoding.EncodeToString([]byte(secret)),
		"hex":           hex.EncodeToString([]byte(secret)),
		"hex upper":     strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"query escaped": url.QueryEscape(secret),
		"path escaped":  url.PathEscape(secret),
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			in := `{"echo":"` + form + `","again":"` + form + `"}`
			want := `{"echo":"` + ph + `","again":"` + ph + `"}`
			if got := string(r.replaceAll([]byte(in))); got != want {
				t.Errorf("replaceAll = %q, want %q", got, want)
			}
			// The same through the streaming body, one byte per read, so
			// that every match straddles reads.
			body := r.body(io.NopCloser(iotest.OneByteReader(strings.NewReader(in))), nil)
			got, err := io.ReadAll(body)
			if err != nil || string(got) != want {
				t.Errorf("streamed = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestRedactorStreamsLargeBodies(t *testing.T) {
	const secret = "SECRET-0123456789"
	r := redactorFor(map[string]string{secret: "[ph]"})
	// Secrets at every offset around chunk boundaries.
	var in, want strings.Builder
	for i := range 3 * redactChunk / 50 {
		pad := strings.Repeat("x", i%47)
		in.WriteString(pad + secret)
		want.WriteString(pad + "[ph]")
	}
	got, err := io.ReadAll(r.body(io.NopCloser(strings.NewReader(in.String())), nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want.String() {
		t.Fatalf("large body: %d bytes, want %d; secret left: %v", len(got), want.Len(), strings.Contains(string(got), secret))
	}
}

func TestRedactorHeadersAndShortSecrets(t *testing.T) {
	if r := redactorFor(map[string]string{"abc": "ph"}); r != nil {
		t.Fatal("a 3-byte secret would be redacted everywhere")
	}
	r := redactorFor(map[string]string{"token-123456": "kgph_z"})
	h := http.Header{"X-Echo": {"Bearer token-123456"}, "Set-Cookie": {"a=token-123456; Path=/"}}
	r.headers(h)
	if h.Get("X-Echo") != "Bearer kgph_z" || h.Get("Set-Cookie") != "a=kgph_z; Path=/" {
		t.Fatalf("headers = %v", h)
	}
}

// The proxy's Secret prints as vault.Secret does: never its value, nor
// any of the forms it is redacted in.
func TestSecretNeverPrinted(t *testing.T) {
	const value = "sk-live-0123456789abcdef"
	sec := NewSecret(vault.NewSecret([]byte(value)))
	js, err := json.Marshal(struct{ S *Secret }{sec})
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "secret", sec, "value", *sec)
	printed := fmt.Sprintf("%v %+v %#v %s %q %x %X", sec, sec, sec, *sec, *sec, *sec, sec) + string(js) + logged.String()
	for _, form := range sec.spats {
		if strings.Contains(printed, form) {
			t.Fatalf("a form of the secret was printed: %s", printed)
		}
	}
	if len(sec.spats) < 4 || !strings.Contains(printed, "[redacted]") {
		t.Fatalf("forms %d; printed %s", len(sec.spats), printed)
	}
}

func TestRedactorPrefersEarliestLongest(t *testing.T) {
	r := redactorFor(map[string]string{"abcdef": "1", "abcdefgh": "2"})
	if got := string(r.replaceAll([]byte("xxabcdefghyy abcdefzz"))); got != "xx2yy 1zz" {
		t.Fatalf("got %q", got)
	}
}

func BenchmarkRedactBody(b *testing.B) {
	r := redactorFor(map[string]string{"sk-live-0123456789abcdef": "kgph_placeholder"})
	payload := strings.Repeat(`{"id":"x","object":"model","created":1686935002,"owned_by":"org"},`, 1000)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		io.Copy(io.Discard, r.body(io.NopCloser(strings.NewReader(payload)), nil))
	}
}

// A chunk that cannot start a match is passed on at once, without waiting
// for more of the stream: server-sent events depend on it.
func TestRedactorDoesNotDelayStreams(t *testing.T) {
	r := redactorFor(map[string]string{"SECRET-0123456789": "[ph]"})
	pr, pw := io.Pipe()
	body := r.body(pr, nil)
	go pw.Write([]byte("data: event 1\n\n"))
	buf := make([]byte, 64)
	n, err := body.Read(buf)
	if err != nil || string(buf[:n]) != "data: event 1\n\n" {
		t.Fatalf("first read = %q, %v", buf[:n], err)
	}
	// A tail that could begin the secret waits; the rest goes on.
	go pw.Write([]byte("data: SECR"))
	n, _ = body.Read(buf)
	if string(buf[:n]) != "data: " {
		t.Fatalf("second read = %q, want the part before a possible match", buf[:n])
	}
	go func() { pw.Write([]byte("ET-0123456789 end")); pw.Close() }()
	rest, _ := io.ReadAll(body)
	if string(rest) != "[ph] end" {
		t.Fatalf("rest = %q", rest)
	}
}

// A small body of known length is redacted whole and keeps a correct
// Content-Length; an unbounded one is streamed without one.
func TestRedactResponseLengths(t *testing.T) {
	in := injectionShowing("SECRET-0123456789", "kgph_x")
	req, _ := http.NewRequest(http.MethodGet, "https://a.test/", nil)
	req = req.WithContext(context.WithValue(req.Context(), injectionKey{}, in))
	for _, tt := range []struct {
		name    string
		length  int64
		trailer bool
		wantCL  int64
	}{{"known length", 29, false, 18}, {"unknown length", -1, false, -1}, {"known length with a trailer", 29, true, -1}} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"echo":"SECRET-0123456789"}` + "\n"
			resp := &http.Response{StatusCode: 200, Header: http.Header{}, Request: req,
				ContentLength: tt.length, Body: io.NopCloser(strings.NewReader(body))}
			if tt.trailer {
				// Announced now, filled in at the end of the body, as the
				// transport does.
				resp.Trailer = http.Header{"X-Echo": nil}
				resp.Body = io.NopCloser(io.MultiReader(strings.NewReader(body), eofFunc(func() {
					resp.Trailer.Set("X-Echo", "SECRET-0123456789")
				})))
			}
			if tt.length >= 0 {
				resp.Header.Set("Content-Length", "29")
			}
			if err := redactResponse(resp); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			if string(got) != `{"echo":"kgph_x"}`+"\n" || resp.ContentLength != tt.wantCL {
				t.Fatalf("body %q, length %d; want the redacted body, length %d", got, resp.ContentLength, tt.wantCL)
			}
			if tt.wantCL >= 0 && resp.Header.Get("Content-Length") != "18" {
				t.Fatalf("Content-Length header %q", resp.Header.Get("Content-Length"))
			}
			if tt.wantCL < 0 && resp.Header.Get("Content-Length") != "" {
				t.Fatalf("streamed body kept Content-Length %q", resp.Header.Get("Content-Length"))
			}
			if tt.trailer && resp.Trailer.Get("X-Echo") != "kgph_x" {
				t.Fatalf("trailer %q, want it redacted", resp.Trailer.Get("X-Echo"))
			}
		})
	}
}

// A response without a body keeps its Content-Length: for HEAD it is the
// length a GET would get.
func TestRedactResponseWithoutBody(t *testing.T) {
	in := injectionShowing("SECRET-0123456789", "kgph_x")
	for _, tt := range []struct {
		method string
		status int
	}{{http.MethodHead, 200}, {http.MethodGet, http.StatusNoContent}, {http.MethodGet, http.StatusNotModified}} {
		req, _ := http.NewRequest(tt.method, "https://a.test/", nil)
		req = req.WithContext(context.WithValue(req.Context(), injectionKey{}, in))
		resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Length": {"12345"}}, Request: req,
			ContentLength: 12345, Body: io.NopCloser(strings.NewReader(""))}
		if err := redactResponse(resp); err != nil {
			t.Fatal(err)
		}
		if resp.ContentLength != 12345 || resp.Header.Get("Content-Length") != "12345" {
			t.Errorf("%s %d: length %d, header %q; want 12345 kept", tt.method, tt.status, resp.ContentLength, resp.Header.Get("Content-Length"))
		}
	}
}

// eofFunc is a reader that runs f when it is first read, then reports EOF.
type eofFunc func()

func (f eofFunc) Read([]byte) (int, error) {
	if f != nil {
		f()
	}
	return 0, io.EOF
}

// A body the transport did not decode cannot be searched: refused.
func TestRedactResponseRefusesEncodedBodies(t *testing.T) {
	in := injectionShowing("SECRET-0123456789", "kgph_x")
	req, _ := http.NewRequest(http.MethodGet, "https://a.test/", nil)
	req = req.WithContext(context.WithValue(req.Context(), injectionKey{}, in))
	for enc, refused := range map[string]bool{"br": true, "zstd": true, "deflate": true, "identity": false} {
		resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Encoding": {enc}}, Request: req,
			ContentLength: -1, Body: io.NopCloser(strings.NewReader("x"))}
		err := redactResponse(resp)
		if refused != errors.Is(err, errUnsearchable) {
			t.Errorf("Content-Encoding %s: %v", enc, err)
		}
	}
}

// A secret base64-encoded after a prefix of any length and before a
// suffix (Basic credentials "user:secret" or "secret:x" echoed back)
// cannot be decoded back out of the redacted value, in either alphabet.
func TestRedactorBase64AtEveryAlignment(t *testing.T) {
	// Of each length modulo 3.
	for _, secret := range []string{"sk-live-0123456789abcdef/+?", "sk-live-0123456789abcdef/+?x", "sk-live-0123456789abcdef/+?xy"} {
		testBase64Alignments(t, secret)
	}
}

func testBase64Alignments(t *testing.T, secret string) {
	r := redactorFor(map[string]string{secret: "kgph_x"})
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		for prefix := range 6 {
			for suffix := range 3 {
				raw := strings.Repeat("u", prefix) + secret + strings.Repeat(":", suffix)
				in := "Basic " + enc.EncodeToString([]byte(raw))
				out := string(r.replaceAll([]byte(in)))
				if out == in {
					t.Errorf("%d-byte secret, prefix %d, suffix %d: not redacted: %s", len(secret), prefix, suffix, in)
					continue
				}
				// Whatever a client decodes from what is left, the secret
				// is not in it.
				rest := strings.TrimPrefix(out, "Basic ")
				for _, part := range strings.Split(rest, "kgph_x") {
					for cut := range 4 {
						if len(part) < cut {
							break
						}
						dec, _ := base64.RawStdEncoding.DecodeString(strings.TrimRight(part[cut:], "="))
						dec2, _ := base64.RawURLEncoding.DecodeString(strings.TrimRight(part[cut:], "="))
						if strings.Contains(string(dec), secret[2:len(secret)-2]) || strings.Contains(string(dec2), secret[2:len(secret)-2]) {
							t.Errorf("prefix %d: the secret decodes out of %q", prefix, out)
						}
					}
				}
			}
		}
	}
}

// A secret echoed inside JSON, escaped the ways JSON writers escape it.
func TestRedactorJSONEscapes(t *testing.T) {
	const secret = `wJalrXUtnFEMI/K7MDENG/bPx<RfiCY>&"EXAMPLE\KEY`
	r := redactorFor(map[string]string{secret: "kgph_x"})
	goJSON, _ := json.Marshal(map[string]string{"k": secret})
	for name, body := range map[string]string{
		"encoding/json":     string(goJSON),
		"python json.dumps": `{"k":"wJalrXUtnFEMI/K7MDENG/bPx<RfiCY>&\"EXAMPLE\\KEY"}`,
		"slash-escaped":     `{"k":"wJalrXUtnFEMI\/K7MDENG\/bPx\u003cRfiCY\u003e\u0026\"EXAMPLE\\KEY"}`,
	} {
		if out := string(r.replaceAll([]byte(body))); out != `{"k":"kgph_x"}` {
			t.Errorf("%s: %s -> %s", name, body, out)
		}
	}
}

// An informational answer is redacted on its way out and is not taken
// for the response's status.
func TestStatusWriterInformational(t *testing.T) {
	in := injectionShowing("SECRET-0123456789", "kgph_x")
	rec := httptest.NewRecorder()
	sw := &statusWriter{ResponseWriter: rec, in: in}
	sw.Header().Set("Link", "</a?k=SECRET-0123456789>; rel=preload")
	sw.WriteHeader(http.StatusEarlyHints)
	if got := sw.Header().Get("Link"); got != "</a?k=kgph_x>; rel=preload" {
		t.Fatalf("103 Link header %q", got)
	}
	sw.WriteHeader(http.StatusOK)
	if sw.status != http.StatusOK {
		t.Fatalf("status %d, want the final 200", sw.status)
	}
}

// An upstream error that quoted the secret would reach neither the
// sandbox's 502 nor the log.
func TestUpstreamErrorRedacted(t *testing.T) {
	const secret = "SECRET-0123456789"
	var logged strings.Builder
	p := &Proxy{errLimit: lograte.New(time.Second), log: slog.New(slog.NewTextHandler(&logged, nil))}
	in := injectionShowing(secret, "kgph_x")
	req := httptest.NewRequest(http.MethodGet, "https://a.test/", nil)
	req = req.WithContext(context.WithValue(req.Context(), injectionKey{}, in))
	rec := httptest.NewRecorder()
	p.upstreamError(rec, req, fmt.Errorf("upstream said: bad key %s", secret))
	if rec.Code != http.StatusBadGateway || strings.Contains(rec.Body.String()+logged.String(), secret) ||
		!strings.Contains(rec.Body.String(), "kgph_x") {
		t.Fatalf("502 %d %q; log %q", rec.Code, rec.Body.String(), logged.String())
	}
}
