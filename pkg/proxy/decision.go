package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"
)

// Outcome is what the proxy did with a request or connection.
type Outcome string

// Outcomes of a Decision.
const (
	OutcomeInjected  Outcome = "injected"  // forwarded with at least one secret substituted
	OutcomeForwarded Outcome = "forwarded" // forwarded with nothing substituted
	OutcomeDenied    Outcome = "denied"    // refused; Reason says why
	OutcomeSpliced   Outcome = "spliced"   // relayed without TLS termination: nothing to inject
)

// Decision is the proxy's record of one request, or of a connection it
// refused before any request could be read. It carries names only: never a
// header value, a query string or a secret.
type Decision struct {
	Sandbox     string         // sandbox ID, or "" when the source was not a sandbox
	Src         netip.AddrPort // the sandbox end of the connection
	Dst         netip.AddrPort // the original destination
	Host        string         // TLS server name
	Method      string         // "" for a connection-level refusal
	Path        string         // request path without the query
	Credentials []string       // "vault/credential" of each secret injected
	Outcome     Outcome
	Reason      Reason // set when Outcome is OutcomeDenied
	// Vault and Credential name the credential a denial concerns, when
	// there is one (an archived vault, an unapproved host); else "".
	Vault, Credential string
	Detail            string // the explanation sent to the client, for denials
	Status            int    // status answered to the sandbox; 0 if none
	Bytes             int64  // response body bytes sent to the sandbox (spliced: bytes from upstream)
	Sent              int64  // spliced: bytes from the sandbox to upstream
	Duration          time.Duration
}

// Keys of the proxy's structured log records.
const (
	logSandbox     = "sandbox"
	logSrc         = "src"
	logDst         = "dst"
	logHost        = "host"
	logMethod      = "method"
	logPath        = "path"
	logCredentials = "credentials"
	logStatus      = "status"
	logBytes       = "bytes"
	logDuration    = "duration"
	logReason      = "reason"
	logDetail      = "detail"
	logError       = "err"
)

// decide logs d at the level its outcome calls for (info when allowed,
// warn when denied) and hands it to Config.OnDecision.
func (p *Proxy) decide(d Decision) {
	p.logDecision(d)
	if p.cfg.OnDecision != nil {
		p.cfg.OnDecision(d)
	}
}

// logDecision writes d to the log, if the log takes its level: building
// the record is most of the cost of a line, so it is skipped when the
// line would be dropped.
func (p *Proxy) logDecision(d Decision) {
	level := slog.LevelInfo
	if d.Outcome == OutcomeDenied {
		level = slog.LevelWarn
	}
	if !p.log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String(logSandbox, d.Sandbox),
		slog.String(logHost, d.Host),
		slog.String(logDst, d.Dst.String()),
	}
	if d.Method != "" {
		attrs = append(attrs,
			slog.String(logMethod, d.Method),
			slog.String(logPath, d.Path),
			slog.Any(logCredentials, d.Credentials),
			slog.Int(logStatus, d.Status),
			slog.Int64(logBytes, d.Bytes))
	} else {
		attrs = append(attrs, slog.String(logSrc, d.Src.String()))
	}
	attrs = append(attrs, slog.Duration(logDuration, d.Duration))
	msg := "request " + string(d.Outcome)
	if d.Outcome == OutcomeDenied {
		attrs = append(attrs, slog.String(logReason, string(d.Reason)), slog.String(logDetail, d.Detail))
		if d.Method == "" {
			msg = "connection refused"
		}
	}
	p.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// connDecision is the Decision for a connection refused before any
// request was read.
func connDecision(ci *connInfo, src netip.AddrPort, d *denial, start time.Time) Decision {
	dec := Decision{Src: src, Outcome: OutcomeDenied, Reason: d.reason, Detail: d.msg, Duration: time.Since(start)}
	if ci != nil {
		dec.Sandbox, dec.Dst, dec.Host = ci.sb.ID(), ci.dst, ci.sni
	}
	return dec
}

// requestDecision is the Decision for one request.
func requestDecision(ci *connInfo, r *http.Request, sw *statusWriter, creds []string, d *denial, start time.Time) Decision {
	dec := Decision{
		Sandbox: ci.sb.ID(), Src: ci.src, Dst: ci.dst, Host: ci.sni,
		Method: r.Method, Path: r.URL.Path, Credentials: creds,
		Status: sw.status, Bytes: sw.bytes, Duration: time.Since(start),
		Outcome: OutcomeForwarded,
	}
	switch {
	case d != nil:
		dec.Outcome, dec.Reason, dec.Detail = OutcomeDenied, d.reason, d.msg
		dec.Vault, dec.Credential = d.vault, d.cred
	case len(creds) > 0:
		dec.Outcome = OutcomeInjected
	}
	return dec
}
