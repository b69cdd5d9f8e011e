package cli

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

// defaultRunsLimit is how many runs `schedule runs` shows without --limit.
const defaultRunsLimit = 20

func runSchedule(e *env, args []string) (int, error) {
	if len(args) == 0 {
		return ExitUsage, usageError("schedule: want create, list, show, pause, resume, rm, run-now or runs")
	}
	switch args[0] {
	case "create":
		return scheduleCreate(e, args[1:])
	case "list":
		return scheduleList(e, args[1:])
	case "show":
		return scheduleShow(e, args[1:])
	case "pause", "resume":
		return scheduleToggle(e, args[0], args[1:])
	case "rm":
		return scheduleRemove(e, args[1:])
	case "run-now":
		return scheduleRunNow(e, args[1:])
	case "runs":
		return scheduleRuns(e, args[1:])
	}
	return ExitUsage, usageError("schedule: unknown subcommand %q", args[0])
}

func scheduleCreate(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule create", "schedule create NAME --cron SPEC [--timezone TZ] [--vault V]... [--allow DOMAIN]... "+
		"[--mode allowlist|open] [--runtime native|runsc] [--capture cgroup|tc] [--timeout DUR] [--max-concurrent N] -- CMD [ARG]...", e.stdout)
	cron := fs.String("cron", "", "when to run: 5 fields ('*/5 * * * *'), 6 with seconds first ('*/10 * * * * *'), or @hourly, @daily, @every 30s")
	tz := fs.String("timezone", "", "IANA time zone the cron fields are read in, e.g. Europe/Berlin (default UTC)")
	sf := addSandboxFlags(fs)
	timeout := fs.Duration("timeout", 0, "kill a run that takes longer, e.g. 90s, 10m (default: no limit)")
	maxConc := fs.Int("max-concurrent", 1, "runs that may be in progress at once; a due run beyond it is skipped and recorded")
	asJSON := fs.Bool("json", false, "print the schedule as JSON")
	pos, tail, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) == 0 {
		return ExitUsage, usageError("schedule create: want NAME --cron SPEC -- CMD [ARG]...")
	}
	argv := append(pos[1:], tail...)
	if len(argv) == 0 {
		return ExitUsage, usageError("schedule create: no command given (keygate schedule create NAME --cron SPEC -- CMD [ARG]...)")
	}
	if *cron == "" {
		return ExitUsage, usageError("schedule create: --cron is required")
	}
	dir, _ := os.Getwd()
	spec := api.ScheduleSpec{
		Name: pos[0], Cron: *cron, Timezone: *tz,
		Vaults: sf.vaults, Allow: sf.allow, Passthrough: sf.passthrough, Runtime: *sf.runtime,
		Capture: *sf.capture, Mode: *sf.mode,
		Argv: argv, Env: scheduledEnv(), Dir: dir, Timeout: *timeout, MaxConcurrent: *maxConc,
	}
	var sc api.Schedule
	if err := e.client.Do(e.ctx, http.MethodPost, "/v1/schedules", spec, &sc); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, sc)
	}
	fmt.Fprintf(e.stdout, "schedule %s created: %s (%s), next run %s\n", sc.Name, sc.Cron, sc.Timezone,
		inZone(sc.NextRun, sc.Timezone))
	return ExitOK, nil
}

// scheduledEnv is the caller's environment a scheduled run inherits: what
// `keygate run` passes, but the terminal's variables, since a scheduled
// run has no terminal.
func scheduledEnv() []string {
	return slices.DeleteFunc(passedEnv(), func(kv string) bool {
		return strings.HasPrefix(kv, "TERM=") || strings.HasPrefix(kv, "COLORTERM=")
	})
}

func scheduleList(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule list", "schedule list [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 0 {
		return ExitUsage, usageError("schedule list: unexpected argument %q", pos[0])
	}
	var scheds []api.Schedule
	if err := e.client.Do(e.ctx, http.MethodGet, "/v1/schedules", nil, &scheds); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, scheds)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCRON\tTZ\tNEXT\tLAST\tLAST-EXIT\tSTATE")
	for _, sc := range scheds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sc.Name, sc.Cron, sc.Timezone,
			inZone(sc.NextRun, sc.Timezone), inZone(sc.LastRun, sc.Timezone), lastExit(sc), sc.State())
	}
	return ExitOK, tw.Flush()
}

func scheduleShow(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule show", "schedule show NAME [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	name, err := oneName(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	var sc api.Schedule
	if err := e.client.Do(e.ctx, http.MethodGet, schedulePath(name, ""), nil, &sc); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, sc)
	}
	printSchedule(e.stdout, sc)
	return ExitOK, nil
}

// printSchedule writes sc as "key: value" lines.
func printSchedule(w io.Writer, sc api.Schedule) {
	timeout := "none"
	if sc.Timeout > 0 {
		timeout = sc.Timeout.String()
	}
	capture := sc.Capture
	if capture == "" {
		capture = "default"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	rows := [][2]string{
		{"name", sc.Name},
		{"state", sc.State()},
		{"cron", sc.Cron + " (" + sc.Timezone + ")"},
		{"next run", inZone(sc.NextRun, sc.Timezone)},
		{"command", strings.Join(sc.Argv, " ")},
		{"directory", dash(sc.Dir)},
		{"vaults", joinOr(sc.Vaults, "-")},
		{"allow", joinOr(sc.Allow, "-")},
		{"sandbox", fmt.Sprintf("runtime %s, capture %s, mode %s", dash(sc.Runtime), capture, dash(sc.Mode))},
		{"timeout", timeout},
		{"max-concurrent", strconv.Itoa(sc.MaxConcurrent)},
		{"created", inZone(sc.Created, sc.Timezone)},
		{"last run", lastRun(sc)},
	}
	if len(sc.Passthrough) > 0 {
		rows = slices.Insert(rows, 8, [2]string{"passthrough", strings.Join(sc.Passthrough, ",")})
	}
	if sc.LastError != "" {
		rows = append(rows, [2]string{"last error", sc.LastError})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	tw.Flush()
}

func lastRun(sc api.Schedule) string {
	if sc.LastRunID == "" {
		return "never"
	}
	return fmt.Sprintf("%s at %s, exit %s", sc.LastRunID, inZone(sc.LastRun, sc.Timezone), lastExit(sc))
}

// lastExit is the LAST-EXIT column: the newest run's status, "-" if it
// has none (never ran, still running, could not start).
func lastExit(sc api.Schedule) string {
	switch {
	case sc.LastRunID == "" || sc.LastExit < 0:
		return "-"
	case sc.LastTimedOut:
		return strconv.Itoa(sc.LastExit) + " (timeout)"
	}
	return strconv.Itoa(sc.LastExit)
}

// scheduleToggle pauses or resumes a schedule.
func scheduleToggle(e *env, verb string, args []string) (int, error) {
	fs := newFlagSet("schedule "+verb, "schedule "+verb+" NAME", e.stdout)
	name, err := oneName(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	var sc api.Schedule
	if err := e.client.Do(e.ctx, http.MethodPost, schedulePath(name, verb), nil, &sc); err != nil {
		return ExitFailure, err
	}
	if sc.Paused {
		fmt.Fprintf(e.stdout, "schedule %s paused; runs in progress go on\n", sc.Name)
	} else {
		fmt.Fprintf(e.stdout, "schedule %s active, next run %s\n", sc.Name, inZone(sc.NextRun, sc.Timezone))
	}
	return ExitOK, nil
}

func scheduleRemove(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule rm", "schedule rm NAME", e.stdout)
	name, err := oneName(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if err := e.client.Do(e.ctx, http.MethodDelete, schedulePath(name, ""), nil, nil); err != nil {
		return ExitFailure, err
	}
	fmt.Fprintf(e.stdout, "schedule %s removed with its history\n", name)
	return ExitOK, nil
}

func scheduleRunNow(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule run-now", "schedule run-now NAME [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print the started run as JSON")
	name, err := oneName(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	var r api.ScheduleRun
	if err := e.client.Do(e.ctx, http.MethodPost, schedulePath(name, "run-now"), nil, &r); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, r)
	}
	fmt.Fprintf(e.stdout, "run %s of schedule %s started; see keygate schedule runs %s\n", r.ID, name, name)
	return ExitOK, nil
}

func scheduleRuns(e *env, args []string) (int, error) {
	fs := newFlagSet("schedule runs", "schedule runs NAME [--limit N] [--json | --output]", e.stdout)
	limit := fs.Int("limit", defaultRunsLimit, "at most N runs, the newest (0: the whole history)")
	asJSON := fs.Bool("json", false, "print JSON, output included")
	output := fs.Bool("output", false, "print the newest run's output (the last 64 KiB of its stdout and stderr) and nothing else")
	name, err := oneName(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if *limit < 0 {
		return ExitUsage, usageError("schedule runs: --limit %d: want 0 or more", *limit)
	}
	if *output {
		*limit = 1
	}
	var runs []api.ScheduleRun
	path := schedulePath(name, "runs") + "?limit=" + strconv.Itoa(*limit)
	if err := e.client.Do(e.ctx, http.MethodGet, path, nil, &runs); err != nil {
		return ExitFailure, err
	}
	switch {
	case *output:
		if len(runs) == 0 {
			return ExitFailure, fmt.Errorf("schedule %s has not run yet", name)
		}
		_, err := e.stdout.Write(runs[0].Output)
		return ExitOK, err
	case *asJSON:
		return ExitOK, printJSON(e.stdout, runs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTRIGGER\tSTARTED\tDURATION\tEXIT\tTIMED-OUT\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Trigger, r.Started.Format(time.RFC3339),
			runDuration(r), runExit(r), yesNo(r.TimedOut), runError(r))
	}
	return ExitOK, tw.Flush()
}

func runDuration(r api.ScheduleRun) string {
	if r.Running() {
		return "running"
	}
	d := r.Ended.Sub(r.Started)
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func runExit(r api.ScheduleRun) string {
	if r.Running() || r.ExitCode < 0 {
		return "-"
	}
	return strconv.Itoa(r.ExitCode)
}

func runError(r api.ScheduleRun) string {
	switch {
	case r.Error != "":
		return oneLine(r.Error)
	case r.Interrupted:
		return "interrupted: keygated stopped during the run"
	}
	return "-"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneName parses a subcommand that takes exactly one schedule NAME.
func oneName(fs *flag.FlagSet, args []string) (string, error) {
	pos, _, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageError("%s: want exactly one NAME", fs.Name())
	}
	return pos[0], nil
}

func schedulePath(name, action string) string {
	p := "/v1/schedules/" + url.PathEscape(name)
	if action != "" {
		p += "/" + action
	}
	return p
}

// inZone formats t in the IANA zone tz (UTC if the zone is unknown
// here), or "-" for the zero time.
func inZone(t time.Time, tz string) string {
	if t.IsZero() {
		return "-"
	}
	if loc, err := time.LoadLocation(tz); err == nil {
		t = t.In(loc)
	}
	return t.Format(time.RFC3339)
}
