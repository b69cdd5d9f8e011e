//go:build linux

package hostagent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/proxy"
	"github.com/keygate/keygate/pkg/resolver"
)

// auditTimeout bounds how long an API change waits for its audit record to
// become durable.
const auditTimeout = 10 * time.Second

// actor names the API caller of r for audit records.
func actor(r *http.Request) string {
	if cred, ok := r.Context().Value(peerKey{}).(*unix.Ucred); ok {
		return fmt.Sprintf("uid:%d", cred.Uid)
	}
	return "unknown"
}

// auditChange records a committed vault or credential change and waits
// until the record is durable: the API does not report a change the audit
// log could lose.
func (a *Agent) auditChange(r *http.Request, rec audit.Record) error {
	rec.Actor = actor(r)
	ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
	defer cancel()
	a.metrics.AuditAppends.WithLabelValues(string(rec.Kind)).Inc()
	if err := a.audit.AppendSync(ctx, rec); err != nil {
		a.metrics.AuditErrors.Inc()
		a.log.Error("audit append failed", "kind", rec.Kind, "vault", rec.Vault, "err", err)
		return fmt.Errorf("the change was applied but its audit record could not be written: %w", err)
	}
	return nil
}

// auditDecision records the proxy's injections and denials. Requests
// forwarded without a secret are only in the decision log: they carry
// nothing of the vault's.
func (a *Agent) auditDecision(d proxy.Decision) {
	a.observeDecision(d)
	base := audit.Record{
		Actor: d.Sandbox, Sandbox: d.Sandbox, Host: d.Host, Method: d.Method, Path: d.Path,
		Status: d.Status, DurationMS: d.Duration.Milliseconds(),
	}
	switch d.Outcome {
	case proxy.OutcomeInjected:
		for _, vc := range d.Credentials {
			rec := base
			rec.Kind = audit.KindRequestInject
			rec.Vault, rec.Credential, _ = strings.Cut(vc, "/")
			a.appendAudit(rec)
		}
	case proxy.OutcomeDenied:
		rec := base
		rec.Kind = audit.KindRequestDeny
		rec.Reason, rec.Detail = string(d.Reason), d.Detail
		rec.Vault, rec.Credential = d.Vault, d.Credential
		if rec.Host == "" {
			rec.Detail = strings.TrimSpace(rec.Detail + " (from " + d.Src.String() + " to " + d.Dst.String() + ")")
		}
		a.appendAudit(rec)
	}
}

// appendAudit queues a hot-path record. A failure means the log is broken
// or closed; it is logged, and the log's own state makes later appends
// fail the same way until an operator repairs the storage.
func (a *Agent) appendAudit(rec audit.Record) {
	a.metrics.AuditAppends.WithLabelValues(string(rec.Kind)).Inc()
	if err := a.audit.Append(rec); err != nil {
		a.metrics.AuditErrors.Inc()
		a.auditErrs.Add(1)
		if ok, suppressed := a.auditLimit.Allow(); ok {
			a.log.Error("audit append failed", "kind", rec.Kind, "sandbox", rec.Sandbox, "err", err, "suppressed", suppressed)
		}
	}
}

// auditSandbox records a sandbox's creation or removal, once per vault it
// is bound to so that `keygate audit --vault V` shows who used V.
func (a *Agent) auditSandbox(s *sandbox, kind audit.Kind) {
	rec := audit.Record{Kind: kind, Actor: "keygated", Sandbox: s.id,
		Detail: "address " + s.addr.String() + ", allow " + strings.Join(s.allow, ",")}
	if len(s.passthrough) > 0 {
		rec.Detail += ", passthrough " + strings.Join(s.passthrough, ",")
	}
	if len(s.vaults) == 0 {
		a.appendAudit(rec)
	}
	for _, v := range s.vaults {
		rec.Vault = v
		a.appendAudit(rec)
	}
}

// auditDNSDenial records a lookup the resolver refused; the resolver
// rate-limits these per sandbox and says how many it suppressed.
func (a *Agent) auditDNSDenial(d resolver.Denial) {
	if sb, ok := a.sandboxes.byIDOf(d.Sandbox); ok {
		sb.stats.dnsDenied.Add(1)
	}
	a.denials.add(api.Denial{Time: time.Now(), Sandbox: d.Sandbox, Kind: "dns", Host: d.Name, Reason: d.Reason})
	rec := audit.Record{
		Kind: audit.KindDNSDeny, Actor: d.Sandbox, Sandbox: d.Sandbox, Host: d.Name,
		Reason: d.Reason, Detail: "type " + d.Type,
	}
	if d.Suppressed > 0 {
		rec.Detail += fmt.Sprintf("; %d similar denials suppressed before this one", d.Suppressed)
	}
	a.appendAudit(rec)
}
