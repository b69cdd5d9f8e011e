package proxy

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/vault"
)

// Placeholder IDs used by the fake credentials: marker plus 32 base32
// characters, as placeholder.New makes them.
const (
	phOpenAI  = "kgph_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	phQuery   = "kgph_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	phForeign = "kgph_cccccccccccccccccccccccccccccccc"
	phGone    = "kgph_dddddddddddddddddddddddddddddddd"
	phUnknown = "kgph_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
)

const (
	secretOpenAI = "sk-real-OPENAI-9f8e7d"
	secretQuery  = "q/real secret&x=1"
	secretTmpl   = "tmpl-REAL-77aa"
)

type fakeSandbox struct{ id string }

func (s fakeSandbox) ID() string            { return s.id }
func (s fakeSandbox) CgroupID() uint64      { return 1 }
func (s fakeSandbox) Allows(h string) bool  { return true }
func (s fakeSandbox) Inspect(h string) bool { return true }
func (s fakeSandbox) SteeredAtVeth() bool   { return false }

// fakeCreds serves a fixed set of bindings to sandbox "sb1".
type fakeCreds struct {
	bindings  map[string]Binding
	secrets   map[string]string // credential name → secret
	templates []Binding
	gone      error               // returned for phGone
	reads     int                 // Secret calls
	retired   map[string][]string // credential name → secrets before rotations
}

func newFakeCreds() *fakeCreds {
	return &fakeCreds{
		bindings: map[string]Binding{
			phOpenAI: {Vault: "prod", Credential: "openai", Domains: []string{"api.openai.com"}, Prefix: "sk-"},
			phQuery:  {Vault: "prod", Credential: "maps", Domains: []string{"*.maps.test"}, Query: true},
			phGone:   {Vault: "old", Credential: "gone", Domains: []string{"api.openai.com"}},
		},
		secrets: map[string]string{"openai": secretOpenAI, "maps": secretQuery, "tmpl": secretTmpl},
		gone:    &CredentialError{Vault: "old", Credential: "gone", Err: vault.ErrArchived},
	}
}

func (f *fakeCreds) Lookup(sb Sandbox, id string) (Binding, error) {
	switch id {
	case phForeign:
		return Binding{}, ErrForeignPlaceholder
	case phGone:
		return Binding{}, f.gone
	}
	b, ok := f.bindings[id]
	if !ok {
		return Binding{}, ErrUnknownPlaceholder
	}
	return b, nil
}

func (f *fakeCreds) Secret(b Binding) (*Secret, error) {
	f.reads++
	return NewSecret(vault.NewSecret([]byte(f.secrets[b.Credential]))), nil
}

func (f *fakeCreds) Retired(b Binding) []*Secret {
	var out []*Secret
	for _, s := range f.retired[b.Credential] {
		out = append(out, NewSecret(vault.NewSecret([]byte(s))))
	}
	return out
}

func (f *fakeCreds) Approved(sb Sandbox, host string) []Binding {
	var out []Binding
	for _, b := range f.bindings {
		if domain.MatchAny(b.Domains, host) {
			out = append(out, b)
		}
	}
	return out
}

func (f *fakeCreds) Templates(sb Sandbox, host string) ([]Binding, error) {
	var out []Binding
	for _, b := range f.templates {
		if domain.MatchAny(b.Domains, host) {
			out = append(out, b)
		}
	}
	return out, nil
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestInjectionApply(t *testing.T) {
	tests := []struct {
		name       string
		host       string
		target     string            // request target, path and query
		header     map[string]string // request headers
		templates  []Binding
		wantHeader map[string]string // expected headers after apply
		wantQuery  string            // expected raw query, if checked
		wantDeny   Reason
	}{
		{
			name:       "bearer header",
			host:       "api.openai.com",
			target:     "/v1/models",
			header:     map[string]string{"Authorization": "Bearer sk-" + phOpenAI},
			wantHeader: map[string]string{"Authorization": "Bearer " + secretOpenAI},
		},
		{
			name:       "prefix absent is kept as sent",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"X-Key": phOpenAI},
			wantHeader: map[string]string{"X-Key": secretOpenAI},
		},
		{
			name:       "placeholder inside a longer value",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"Cookie": "a=1; key=sk-" + phOpenAI + "; b=2"},
			wantHeader: map[string]string{"Cookie": "a=1; key=" + secretOpenAI + "; b=2"},
		},
		{
			name:       "twice in one value",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"X-Two": phOpenAI + "," + phOpenAI},
			wantHeader: map[string]string{"X-Two": secretOpenAI + "," + secretOpenAI},
		},
		{
			name:       "basic auth password",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"Authorization": basic("x-access-token", "sk-"+phOpenAI)},
			wantHeader: map[string]string{"Authorization": basic("x-access-token", secretOpenAI)},
		},
		{
			name:       "basic auth lower-case scheme",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"Authorization": "basic " + base64.StdEncoding.EncodeToString([]byte("u:"+phOpenAI))},
			wantHeader: map[string]string{"Authorization": "basic " + base64.StdEncoding.EncodeToString([]byte("u:"+secretOpenAI))},
		},
		{
			name:      "query opted in",
			host:      "tiles.maps.test",
			target:    "/tile?key=" + phQuery + "&z=3",
			wantQuery: "key=" + url.QueryEscape(secretQuery) + "&z=3",
		},
		{
			name:     "query not opted in",
			host:     "api.openai.com",
			target:   "/v1?key=" + phOpenAI,
			wantDeny: ReasonPlaceholderInURL,
		},
		{
			name:     "placeholder in path",
			host:     "tiles.maps.test",
			target:   "/" + phQuery + "/x",
			wantDeny: ReasonPlaceholderInURL,
		},
		{
			name:     "unapproved host",
			host:     "evil.test",
			target:   "/",
			header:   map[string]string{"Authorization": "Bearer " + phOpenAI},
			wantDeny: ReasonUnapprovedHost,
		},
		{
			name:     "wildcard does not cover the bare suffix",
			host:     "maps.test",
			target:   "/?key=" + phQuery,
			wantDeny: ReasonUnapprovedHost,
		},
		{
			name:     "another sandbox's placeholder",
			host:     "api.openai.com",
			target:   "/",
			header:   map[string]string{"Authorization": "Bearer " + phForeign},
			wantDeny: ReasonForeignPlaceholder,
		},
		{
			name:     "unknown placeholder",
			host:     "api.openai.com",
			target:   "/",
			header:   map[string]string{"Authorization": "Bearer " + phUnknown},
			wantDeny: ReasonUnknownPlaceholder,
		},
		{
			name:     "truncated placeholder",
			host:     "api.openai.com",
			target:   "/",
			header:   map[string]string{"Authorization": "Bearer " + phOpenAI[:20]},
			wantDeny: ReasonUnknownPlaceholder,
		},
		{
			name:     "archived vault",
			host:     "api.openai.com",
			target:   "/",
			header:   map[string]string{"Authorization": "Bearer " + phGone},
			wantDeny: ReasonVaultArchived,
		},
		{
			name:       "template set when the client sent nothing",
			host:       "api.tmpl.test",
			target:     "/",
			templates:  []Binding{{Vault: "prod", Credential: "tmpl", Domains: []string{"api.tmpl.test"}, Header: "X-Api-Key: token {}"}},
			wantHeader: map[string]string{"X-Api-Key": "token " + secretTmpl},
		},
		{
			name:       "template not set on other hosts",
			host:       "other.test",
			target:     "/",
			templates:  []Binding{{Vault: "prod", Credential: "tmpl", Domains: []string{"api.tmpl.test"}, Header: "X-Api-Key: {}"}},
			wantHeader: map[string]string{"X-Api-Key": ""},
		},
		{
			name:       "no placeholder, nothing changes",
			host:       "api.openai.com",
			target:     "/",
			header:     map[string]string{"Authorization": "Bearer sk-user-supplied"},
			wantHeader: map[string]string{"Authorization": "Bearer sk-user-supplied"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds := newFakeCreds()
			creds.templates = tt.templates
			r, err := http.NewRequest(http.MethodGet, "https://"+tt.host+tt.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			in := &injection{sb: fakeSandbox{"sb1"}, host: tt.host, creds: creds}
			d := in.apply(r)

			if tt.wantDeny != "" {
				if d == nil || d.reason != tt.wantDeny {
					t.Fatalf("apply = %v, want denial %s", d, tt.wantDeny)
				}
				assertNoSecret(t, d.msg)
				return
			}
			if d != nil {
				t.Fatalf("apply denied: %v", d)
			}
			for k, want := range tt.wantHeader {
				if got := r.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if tt.wantQuery != "" && r.URL.RawQuery != tt.wantQuery {
				t.Errorf("query = %q, want %q", r.URL.RawQuery, tt.wantQuery)
			}
		})
	}
}

func TestInjectionReadsEachSecretOnce(t *testing.T) {
	creds := newFakeCreds()
	r, _ := http.NewRequest(http.MethodGet, "https://api.openai.com/", nil)
	r.Header.Set("Authorization", "Bearer "+phOpenAI)
	r.Header.Set("X-Again", phOpenAI)
	in := &injection{sb: fakeSandbox{"sb1"}, host: "api.openai.com", creds: creds}
	if d := in.apply(r); d != nil {
		t.Fatal(d)
	}
	if creds.reads != 1 {
		t.Errorf("Secret read %d times, want once per request", creds.reads)
	}
	if len(in.used) != 1 || in.used[0] != "prod/openai" {
		t.Errorf("used = %v, want [prod/openai]", in.used)
	}
}

func TestCredentialDenialMessages(t *testing.T) {
	tests := []struct {
		err  error
		want Reason
		msg  string
	}{
		{&CredentialError{Vault: "v", Credential: "c", Err: vault.ErrArchived}, ReasonVaultArchived, `vault "v"`},
		{&CredentialError{Vault: "v", Credential: "c", Err: vault.ErrNotFound}, ReasonCredentialRemoved, "removed"},
		{errors.New("disk on fire"), ReasonSecretUnavailable, "unavailable"},
		{ErrForeignPlaceholder, ReasonForeignPlaceholder, "another sandbox"},
	}
	for _, tt := range tests {
		d := credentialDenial(tt.err)
		if d.reason != tt.want || !strings.Contains(d.msg, tt.msg) {
			t.Errorf("credentialDenial(%v) = %s %q, want %s containing %q", tt.err, d.reason, d.msg, tt.want, tt.msg)
		}
	}
}

func assertNoSecret(t *testing.T, s string) {
	t.Helper()
	for _, sec := range []string{secretOpenAI, secretQuery, secretTmpl} {
		if strings.Contains(s, sec) {
			t.Errorf("message contains a secret: %q", s)
		}
	}
}

// After a rotation, a response is searched for the secret the credential
// had before as well, but only the current one is sent.
func TestPrepareRedactionRetiredSecrets(t *testing.T) {
	const before = "sk-before-rotation-0123456789abcdef"
	creds := newFakeCreds()
	creds.retired = map[string][]string{"openai": {before}}
	in := &injection{sb: fakeSandbox{"sb1"}, host: "api.openai.com", creds: creds}
	req, _ := http.NewRequest(http.MethodGet, "https://api.openai.com/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+phOpenAI)
	if d := in.apply(req); d != nil {
		t.Fatal(d.msg)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer "+secretOpenAI {
		t.Fatalf("sent %q, want the current secret", got)
	}
	in.prepareRedaction()
	for _, s := range in.shown {
		if string(s.sec.Bytes()) == before {
			t.Fatal("the retired secret is among those the request may send")
		}
	}
	out := string(in.red.replaceAll([]byte("key seen earlier: " + before + "; now: " + secretOpenAI)))
	if strings.Contains(out, before) || strings.Contains(out, secretOpenAI) {
		t.Fatalf("not redacted: %s", out)
	}
	as := shownAs(creds.bindings[phOpenAI])
	if want := "key seen earlier: " + as + "; now: " + as; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

// A response from a host is searched for every secret of the sandbox
// approved there, also those the request did not send.
func TestPrepareRedactionApprovedSecrets(t *testing.T) {
	creds := newFakeCreds()
	in := &injection{sb: fakeSandbox{"sb1"}, host: "api.openai.com", creds: creds}
	req, _ := http.NewRequest(http.MethodGet, "https://api.openai.com/v1/models", nil)
	if d := in.apply(req); d != nil {
		t.Fatal(d.msg)
	}
	in.prepareRedaction()
	if len(in.used) != 0 {
		t.Fatalf("used %v: nothing was injected", in.used)
	}
	red := in.red
	if red == nil {
		t.Fatal("no redactor for the host's approved credentials")
	}
	if out := string(red.replaceAll([]byte("last key seen: " + secretOpenAI))); strings.Contains(out, secretOpenAI) {
		t.Fatalf("approved secret not redacted: %s", out)
	}
	// Not approved here: not fetched.
	in = &injection{sb: fakeSandbox{"sb1"}, host: "elsewhere.test", creds: creds}
	in.prepareRedaction()
	if len(in.shown) != 0 {
		t.Fatalf("secrets fetched for a host none is approved for: %d", len(in.shown))
	}
}

// A sandbox that has ended leaves no upstream transport behind; other
// sandboxes keep theirs.
func TestUpstreamsForget(t *testing.T) {
	u := newUpstreams(nil)
	a := u.transport(upstreamKey{"sb1", "api.example.test"})
	u.transport(upstreamKey{"sb1", "other.example.test"})
	b := u.transport(upstreamKey{"sb2", "api.example.test"})
	if a == b {
		t.Fatal("two sandboxes share a transport")
	}
	u.forget("sb1")
	if len(u.byKey) != 1 || u.byKey[upstreamKey{"sb2", "api.example.test"}] != b {
		t.Fatalf("after forget(sb1): %v", u.byKey)
	}
}
