package proxy

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/keygate/keygate/pkg/domain"
	"github.com/keygate/keygate/pkg/placeholder"
)

// injection substitutes one request's placeholders. It resolves each
// distinct placeholder once and remembers which credentials it used.
type injection struct {
	sb      Sandbox
	host    string
	creds   Credentials
	secrets map[string]string // placeholder ID → secret, for this request only
	used    []string          // credential names injected, for the decision record
}

// apply replaces every placeholder in r's header values. A placeholder in
// the URL is refused: query injection is not enabled, and forwarding a
// placeholder would show the upstream keygate's tokens.
func (in *injection) apply(r *http.Request) *denial {
	if placeholder.Contains(r.URL.Path) || placeholder.Contains(r.URL.RawQuery) {
		return deny(ReasonPlaceholderInURL, "placeholders are substituted in request headers only, not in the URL")
	}
	for name, values := range r.Header {
		for i, v := range values {
			if !placeholder.Contains(v) {
				continue
			}
			nv, d := in.value(name, v)
			if d != nil {
				return d
			}
			values[i] = nv
		}
	}
	return nil
}

// value substitutes the placeholders in one header value. Basic
// credentials are decoded, substituted and re-encoded.
func (in *injection) value(name, v string) (string, *denial) {
	if http.CanonicalHeaderKey(name) == "Authorization" {
		if enc, ok := cutPrefixFold(v, "Basic "); ok {
			if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc)); err == nil && placeholder.Contains(string(raw)) {
				out, d := in.replace(string(raw))
				if d != nil {
					return "", d
				}
				return v[:len(v)-len(enc)] + base64.StdEncoding.EncodeToString([]byte(out)), nil
			}
		}
	}
	return in.replace(v)
}

func (in *injection) replace(s string) (string, *denial) {
	toks := placeholder.Find(s)
	if len(toks) == 0 {
		return s, nil
	}
	var b strings.Builder
	last := 0
	for _, tok := range toks {
		secret, d := in.secret(tok)
		if d != nil {
			return "", d
		}
		b.WriteString(s[last:tok.Start])
		b.WriteString(secret)
		last = tok.End
	}
	b.WriteString(s[last:])
	return b.String(), nil
}

func (in *injection) secret(tok placeholder.Token) (string, *denial) {
	if !tok.Valid {
		return "", deny(ReasonUnknownPlaceholder, "a placeholder-shaped value in this request is not a live placeholder")
	}
	if s, ok := in.secrets[tok.ID]; ok {
		return s, nil
	}
	b, err := in.creds.Lookup(in.sb, tok.ID)
	if err != nil {
		return "", credentialDenial("", err)
	}
	if !domain.MatchAny(b.Domains, in.host) {
		return "", deny(ReasonUnapprovedHost, "credential %q is not approved for %s", b.Credential, in.host)
	}
	sec, err := in.creds.Secret(b)
	if err != nil {
		return "", credentialDenial(b.Credential, err)
	}
	if in.secrets == nil {
		in.secrets = make(map[string]string)
	}
	in.secrets[tok.ID] = string(sec.Bytes())
	in.used = append(in.used, b.Vault+"/"+b.Credential)
	return in.secrets[tok.ID], nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return "", false
}
