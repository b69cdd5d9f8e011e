package resolver

// deny records a denied query, subject to the record rate: a warning in the
// log, with attrs appended, and a call of OnDeny.
func (r *Resolver) deny(d Denial, attrs ...any) {
	ok, suppressed := r.limits.allow(limitKey{kindDenial, d.Sandbox}, r.now())
	if !ok {
		return
	}
	d.Suppressed = suppressed

	rec := []any{logSandbox, d.Sandbox, logName, d.Name, logType, d.Type, logReason, d.Reason}
	rec = append(rec, attrs...)
	r.log.Warn("dns query denied", withSuppressed(rec, suppressed)...)
	if r.onDeny != nil {
		r.onDeny(d)
	}
}

// warnDropped records, subject to the record rate, that internal addresses
// were dropped from an answer for sandbox.
func (r *Resolver) warnDropped(sandbox, name, qtype string, dropped int) {
	ok, suppressed := r.limits.allow(limitKey{kindDropped, sandbox}, r.now())
	if !ok {
		return
	}
	rec := []any{logSandbox, sandbox, logName, name, logType, qtype,
		logReason, "internal address for a public name", logDropped, dropped}
	r.log.Warn("dns answer dropped", withSuppressed(rec, suppressed)...)
}

// errorUpstream records, subject to the record rate, that resolving a query
// of sandbox upstream failed.
func (r *Resolver) errorUpstream(sandbox, name, qtype string, err error) {
	ok, suppressed := r.limits.allow(limitKey{kindFailure, sandbox}, r.now())
	if !ok {
		return
	}
	rec := []any{logSandbox, sandbox, logName, name, logType, qtype, logError, err}
	r.log.Error("dns upstream failed", withSuppressed(rec, suppressed)...)
}

// withSuppressed appends the suppressed count to a record's attributes when
// records were suppressed.
func withSuppressed(attrs []any, suppressed int) []any {
	if suppressed == 0 {
		return attrs
	}
	return append(attrs, logSuppressed, suppressed)
}
