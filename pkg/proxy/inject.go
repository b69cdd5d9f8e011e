package proxy

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/placeholder"
)

// injection substitutes one request's placeholders. It resolves each
// distinct placeholder once and remembers which credentials it used.
type injection struct {
	sb    Sandbox
	host  string
	creds Credentials
	used  []string      // "vault/credential" names injected, for the decision record
	shown []shownSecret // each credential's secret fetched for this request, once
	red   *redactor     // built from shown once the request is ready to go; nil if nothing to redact
}

type injectionKey struct{}

// injectionOf returns the injection made for the request whose context is
// ctx, or nil.
func injectionOf(ctx context.Context) *injection {
	in, _ := ctx.Value(injectionKey{}).(*injection)
	return in
}

// apply substitutes r's placeholders and sets the header templates of the
// sandbox's credentials approved for this host. Placeholders are replaced
// in header values, and in the query string only for credentials that opt
// in; a placeholder in the path, or in the query of a credential that did
// not opt in, is refused rather than forwarded, since forwarding it would
// show the upstream one of keygate's tokens. Bodies are never touched.
func (in *injection) apply(r *http.Request) *denial {
	if placeholder.Contains(r.URL.Path) || placeholder.Contains(r.URL.RawPath) {
		return deny(ReasonPlaceholderInURL, "placeholders are never substituted in the URL path")
	}
	if placeholder.Contains(r.URL.RawQuery) {
		q, d := in.replace(r.URL.RawQuery, inQuery)
		if d != nil {
			return d
		}
		r.URL.RawQuery = q
	}
	for name, values := range r.Header {
		auth := name == "Authorization" // r.Header keys are canonical
		for i, v := range values {
			if !placeholder.Contains(v) && !(auth && isBasic(v)) {
				continue
			}
			nv, d := in.value(name, v)
			if d != nil {
				return d
			}
			values[i] = nv
		}
	}
	return in.templates(r)
}

// templates sets each header a credential's template names, on hosts the
// credential is approved for, whether or not the client sent it.
func (in *injection) templates(r *http.Request) *denial {
	binds, err := in.creds.Templates(in.sb, in.host)
	if err != nil {
		return credentialDenial(err)
	}
	for _, b := range binds {
		name, value, ok := strings.Cut(b.Header, ":")
		if !ok {
			continue // validated when the credential was added
		}
		secret, d := in.secretFor(b)
		if d != nil {
			return d
		}
		value = strings.TrimSpace(value)
		r.Header.Set(strings.TrimSpace(name), strings.Replace(value, "{}", secret, 1))
	}
	return nil
}

// prepareRedaction builds the redactor the response is searched with: the
// secrets the request uses, and those of the sandbox's other credentials
// approved for this host, which it did not use: the upstream may have
// them from earlier requests (a debug endpoint that lists them, an error
// quoting the last key it saw).
//
// Secrets the credentials had before a recent rotation are searched for as
// well; they are kept apart from in.shown, which injection reuses.
func (in *injection) prepareRedaction() {
	var retired []shownSecret
	for _, b := range in.creds.Approved(in.sb, in.host) {
		for _, sec := range in.creds.Retired(b) {
			retired = append(retired, shownOf(b, sec))
		}
		if in.fetched(b) != nil {
			continue
		}
		sec, err := in.creds.Secret(b)
		if err != nil {
			continue // gone since: nothing left to send, nor to find
		}
		in.shown = append(in.shown, shownOf(b, sec))
	}
	in.red = newRedactor(append(slices.Clip(in.shown), retired...))
}

// fetched returns b's secret if the request already fetched it, or nil.
func (in *injection) fetched(b Binding) *Secret {
	for _, s := range in.shown {
		if s.vault == b.Vault && s.cred == b.Credential {
			return s.sec
		}
	}
	return nil
}

// shownOf is b's secret sec as the response is searched for it: shown as
// the placeholder the sandbox knows the credential by.
func shownOf(b Binding, sec *Secret) shownSecret {
	return shownSecret{sec: sec, as: shownAs(b), vault: b.Vault, cred: b.Credential}
}

// shownAs is what a secret becomes in a response: the placeholder the
// sandbox knows the credential by.
func shownAs(b Binding) string {
	if b.Placeholder == "" {
		return "[secret redacted by keygate]"
	}
	return b.Placeholder
}

// value substitutes the placeholders in one header value. Basic
// credentials are decoded, substituted and re-encoded.
func (in *injection) value(name, v string) (string, *denial) {
	if http.CanonicalHeaderKey(name) == "Authorization" {
		if enc, ok := cutPrefixFold(v, "Basic "); ok {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
			if err == nil && placeholder.Contains(string(raw)) {
				out, d := in.replace(string(raw), inHeader)
				if d != nil {
					return "", d
				}
				return v[:len(v)-len(enc)] + base64.StdEncoding.EncodeToString([]byte(out)), nil
			}
		}
	}
	return in.replace(v, inHeader)
}

// location is where in a request a placeholder was found.
type location int

const (
	inHeader location = iota
	inQuery
)

// replace substitutes every placeholder in s. A credential's placeholder
// prefix, when s has it just before the token, is replaced along with the
// token: the sandbox was given prefix+token, the upstream gets the secret.
func (in *injection) replace(s string, loc location) (string, *denial) {
	toks := placeholder.Find(s)
	if len(toks) == 0 {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for _, tok := range toks {
		if !tok.Valid {
			return "", deny(ReasonUnknownPlaceholder, "a placeholder-shaped value in this request is not a live placeholder")
		}
		bind, d := in.lookup(tok.ID)
		if d != nil {
			return "", d
		}
		if loc == inQuery && !bind.Query {
			d := deny(ReasonPlaceholderInURL,
				"credential %q is substituted in headers only, not in the query string", bind.Credential)
			d.vault, d.cred = bind.Vault, bind.Credential
			return "", d
		}
		secret, d := in.secretFor(bind)
		if d != nil {
			return "", d
		}
		start := tok.Start
		if p := bind.Prefix; p != "" && start-last >= len(p) && s[start-len(p):start] == p {
			start -= len(p)
		}
		b.WriteString(s[last:start])
		if loc == inQuery {
			secret = url.QueryEscape(secret)
		}
		b.WriteString(secret)
		last = tok.End
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

// lookup finds the credential behind a placeholder and checks that it may
// be sent to this host.
func (in *injection) lookup(id string) (Binding, *denial) {
	b, err := in.creds.Lookup(in.sb, id)
	if err != nil {
		return Binding{}, credentialDenial(err)
	}
	if !domain.MatchAny(b.Domains, in.host) {
		d := deny(ReasonUnapprovedHost, "credential %q is not approved for %s", b.Credential, in.host)
		d.vault, d.cred = b.Vault, b.Credential
		return Binding{}, d
	}
	return b, nil
}

// secretFor returns b's current secret, fetched once per request.
func (in *injection) secretFor(b Binding) (string, *denial) {
	if sec := in.fetched(b); sec != nil {
		return sec.value, nil
	}
	sec, err := in.creds.Secret(b)
	if err != nil {
		return "", credentialDenial(err)
	}
	in.shown = append(in.shown, shownOf(b, sec))
	name := b.Vault + "/" + b.Credential
	if !slices.Contains(in.used, name) {
		in.used = append(in.used, name)
	}
	return sec.value, nil
}

// isBasic reports whether an Authorization value uses the Basic scheme,
// whose credentials are base64 and so hide a placeholder from a plain
// search.
func isBasic(v string) bool {
	_, ok := cutPrefixFold(v, "Basic ")
	return ok
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}
