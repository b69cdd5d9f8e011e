package proxy

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/keygate/keygate/pkg/vault"
)

// Reason names why a request or connection was refused. Reasons appear in
// decision logs, audit records and the JSON body of a 403.
type Reason string

// Refusal reasons.
const (
	ReasonUnknownSandbox     Reason = "unknown_sandbox"
	ReasonUnknownConn        Reason = "unknown_connection"
	ReasonSpoofedSource      Reason = "spoofed_source"
	ReasonNotTLS             Reason = "not_tls"
	ReasonNoSNI              Reason = "no_sni"
	ReasonHostNotAllowed     Reason = "host_not_allowed"
	ReasonNotPinned          Reason = "destination_not_pinned"
	ReasonHostMismatch       Reason = "host_mismatch"
	ReasonUnapprovedHost     Reason = "placeholder_unapproved_host"
	ReasonForeignPlaceholder Reason = "placeholder_of_other_sandbox"
	ReasonUnknownPlaceholder Reason = "placeholder_unknown"
	ReasonPlaceholderInURL   Reason = "placeholder_in_url"
	ReasonConnectMethod      Reason = "connect_not_relayed"
	ReasonVaultArchived      Reason = "vault_archived"
	ReasonCredentialRemoved  Reason = "credential_removed"
	ReasonSecretUnavailable  Reason = "secret_unavailable"
	ReasonTooManyConns       Reason = "too_many_connections"
	ReasonTooManyRequests    Reason = "too_many_requests"
	ReasonPlaintextHTTP      Reason = "plaintext_http"
	ReasonUpstreamFailed     Reason = "upstream_failed"
	ReasonStoreUnavailable   Reason = "store_unavailable"
)

// Sentinel errors a Credentials implementation returns from Lookup.
var (
	ErrForeignPlaceholder = errors.New("placeholder belongs to another sandbox")
	ErrUnknownPlaceholder = errors.New("unknown placeholder")
)

// denial is a refusal with its reason and an explanation for the client.
type denial struct {
	reason Reason
	msg    string
	status int    // the answer's status; 0 = 403
	vault  string // the credential concerned, if any, for the audit record
	cred   string
}

func (d *denial) Error() string { return fmt.Sprintf("%s: %s", d.reason, d.msg) }

func deny(r Reason, format string, args ...any) *denial {
	return &denial{reason: r, msg: fmt.Sprintf(format, args...)}
}

// CredentialError is how a Credentials implementation reports that a
// credential exists but cannot be used now; Err wraps vault.ErrArchived,
// vault.ErrNotFound or another store error.
type CredentialError struct {
	Vault, Credential string
	Err               error
}

func (e *CredentialError) Error() string {
	return fmt.Sprintf("credential %s/%s: %v", e.Vault, e.Credential, e.Err)
}

func (e *CredentialError) Unwrap() error { return e.Err }

// credentialDenial maps an error from Credentials to a refusal. It is the
// one place that decides how a credential failure looks to the sandbox.
func credentialDenial(err error) *denial {
	d := credentialDenialMsg(err)
	var ce *CredentialError
	if errors.As(err, &ce) {
		d.vault, d.cred = ce.Vault, ce.Credential
	}
	return d
}

func credentialDenialMsg(err error) *denial {
	name := "a credential in this request"
	var ce *CredentialError
	if errors.As(err, &ce) {
		name = fmt.Sprintf("credential %q of vault %q", ce.Credential, ce.Vault)
	}
	switch {
	case errors.Is(err, ErrForeignPlaceholder):
		return deny(ReasonForeignPlaceholder, "a placeholder in this request belongs to another sandbox")
	case errors.Is(err, ErrUnknownPlaceholder):
		return deny(ReasonUnknownPlaceholder, "a placeholder-shaped value in this request is not a live placeholder")
	case errors.Is(err, vault.ErrArchived):
		return deny(ReasonVaultArchived, "%s cannot be used: the vault was archived", name)
	case errors.Is(err, vault.ErrUnavailable):
		return deny(ReasonStoreUnavailable, "%s cannot be used: the credential store has been unreachable too long (failing closed)", name)
	case errors.Is(err, vault.ErrNotFound):
		return deny(ReasonCredentialRemoved, "%s cannot be used: it was removed", name)
	default:
		return deny(ReasonSecretUnavailable, "%s cannot be used: secret unavailable", name)
	}
}

// writeDenial answers a refused request with 403 and a short JSON body an
// agent can act on.
func writeDenial(w http.ResponseWriter, d *denial) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Keygate-Denied", string(d.reason))
	w.WriteHeader(cmp.Or(d.status, http.StatusForbidden))
	json.NewEncoder(w).Encode(struct {
		Error  string `json:"error"`
		Reason Reason `json:"reason"`
	}{"keygate: " + d.msg, d.reason})
}
