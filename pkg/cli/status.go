package cli

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

func runStatus(e *env, args []string) (int, error) {
	fs := newFlagSet("status", "status [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, _, err := parse(fs, args); err != nil {
		return ExitUsage, err
	}
	var st api.Status
	if err := e.client.Do(e.ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, st)
	}
	metrics := st.MetricsAddr
	if metrics == "" {
		metrics = "off"
	}
	fmt.Fprintf(e.stdout, "keygated %s, store %s, up %s (since %s)\n", st.Version, st.Store,
		(time.Duration(st.UptimeSeconds) * time.Second).String(), st.Started.Format(time.RFC3339))
	fmt.Fprintf(e.stdout, "sandboxes: %d live; denials since start: %d; metrics: %s\n", st.Sandboxes, st.Denials, metrics)
	if len(st.RecentDenials) == 0 {
		return ExitOK, nil
	}
	fmt.Fprintln(e.stdout, "\nrecent denials:")
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSANDBOX\tKIND\tHOST\tREASON")
	for _, d := range st.RecentDenials {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Time.Format(time.TimeOnly), dash(d.Sandbox), d.Kind, dash(d.Host), d.Reason)
	}
	return ExitOK, tw.Flush()
}
