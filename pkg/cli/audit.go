package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

func runAudit(e *env, args []string) (int, error) {
	if len(args) > 0 && args[0] == "verify" {
		return auditVerify(e, args[1:])
	}
	fs := newFlagSet("audit", "audit [--vault V] [--since T] [--kind K]... [--limit N] [--json] | audit verify", e.stdout)
	vaultName := fs.String("vault", "", "only records of this vault")
	since := fs.String("since", "", "only records since T: RFC 3339 time (2026-01-02T15:04:05Z) or a duration ago (90m, 24h)")
	var kinds stringList
	fs.Var(&kinds, "kind", "only records of this kind, e.g. request.inject, request.deny, credential.rotate (repeatable)")
	limit := fs.Int("limit", 0, "at most N records, the newest (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 0 {
		return ExitUsage, usageError("audit: unexpected argument %q (want audit [flags] or audit verify)", pos[0])
	}
	q := url.Values{}
	if *vaultName != "" {
		q.Set("vault", *vaultName)
	}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return ExitUsage, usageError("audit: --since: %v", err)
		}
		q.Set("since", t.UTC().Format(time.RFC3339Nano))
	}
	for _, k := range kinds {
		q.Add("kind", k)
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	var recs []api.AuditRecord
	if err := e.client.Do(e.ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &recs); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, recs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tSANDBOX\tVAULT/CREDENTIAL\tHOST\tREQUEST\tSTATUS\tREASON")
	for _, r := range recs {
		cred := r.Vault
		if r.Credential != "" {
			cred += "/" + r.Credential
		}
		req := strings.TrimSpace(r.Method + " " + r.Path)
		status := "-"
		if r.Status != 0 {
			status = strconv.Itoa(r.Status)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.Time.Format(time.RFC3339),
			r.Kind, dash(r.Sandbox), dash(cred), dash(r.Host), dash(req), status, dash(r.Reason))
	}
	return ExitOK, tw.Flush()
}

func auditVerify(e *env, args []string) (int, error) {
	fs := newFlagSet("audit verify", "audit verify [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if _, _, err := parse(fs, args); err != nil {
		return ExitUsage, err
	}
	var rep api.AuditReport
	if err := e.client.Do(e.ctx, http.MethodPost, "/v1/audit/verify", nil, &rep); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		if err := printJSON(e.stdout, rep); err != nil {
			return ExitFailure, err
		}
	} else if rep.OK {
		fmt.Fprintf(e.stdout, "audit log verified: %d records, chain and head intact\n", rep.Records)
	}
	if !rep.OK {
		f := rep.Failure
		if f == nil {
			return ExitFailure, fmt.Errorf("audit log does not verify")
		}
		msg := fmt.Sprintf("audit log does not verify: first bad record is %d: %s", f.Line, f.Reason)
		if f.Line == 0 {
			msg = "audit log does not verify: " + string(f.Reason)
		}
		if f.Detail != "" {
			msg += " (" + f.Detail + ")"
		}
		return ExitFailure, fmt.Errorf("%s", msg)
	}
	return ExitOK, nil
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return now.Add(-d), nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
