package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/schedule"
)

// echoRunner prints its command, or fails to start if the job binds the
// vault "gone".
type echoRunner struct{}

func (echoRunner) Run(ctx context.Context, job schedule.Job, out io.Writer) (schedule.Result, error) {
	if slices.Contains(job.Vaults, "gone") {
		return schedule.Result{}, errors.New(`vault "gone": vault archived`)
	}
	fmt.Fprintf(out, "hello from %s\n", strings.Join(job.Argv, " "))
	return schedule.Result{ExitCode: 0, Sandbox: "sb1"}, nil
}

// scheduleAgent serves the schedule endpoints on a unix socket, as
// keygated does, and returns the socket's path and the scheduler.
func scheduleAgent(t *testing.T) (string, *schedule.Scheduler) {
	t.Helper()
	dir := t.TempDir()
	st, err := schedule.OpenBolt(filepath.Join(dir, "schedules.db"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := schedule.New(schedule.Config{Store: st, Runner: echoRunner{}, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	(&schedule.HTTP{Scheduler: s}).Register(mux)
	sock := filepath.Join(dir, "keygate.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		s.Stop(context.Background())
		st.Close()
	})
	return sock, s
}

// keygate runs the CLI against sock and returns its exit code, stdout
// and stderr.
func keygate(sock string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(append([]string{"--socket", sock}, args...), nil, &out, &errb)
	return code, out.String(), errb.String()
}

// waitRun waits until the schedule's newest run has ended.
func waitRun(t *testing.T, s *schedule.Scheduler, name string) schedule.Run {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runs, err := s.Runs(context.Background(), name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) == 1 && !runs[0].Running() {
			// The schedule's own record is written just after the run's.
			time.Sleep(20 * time.Millisecond)
			return runs[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("run of %s did not end", name)
	return schedule.Run{}
}

func TestScheduleCommands(t *testing.T) {
	sock, s := scheduleAgent(t)
	must := func(want int, args ...string) string {
		t.Helper()
		code, out, errOut := keygate(sock, args...)
		if code != want {
			t.Fatalf("keygate %v: exit %d, want %d; stdout %q stderr %q", args, code, want, out, errOut)
		}
		if want != 0 {
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("keygate %v: error is not one line: %q", args, errOut)
			}
			return errOut
		}
		return out
	}

	out := must(0, "schedule", "create", "ping", "--cron", "@every 1h", "--vault", "v", "--timeout", "5s", "--", "curl", "-sS", "https://x.example")
	if !strings.Contains(out, "schedule ping created: @every 1h (UTC), next run ") {
		t.Errorf("create: %q", out)
	}
	if errOut := must(1, "schedule", "create", "tz", "--cron", "@hourly", "--timezone", "Mars/Olympus", "--", "true"); !strings.Contains(errOut, "unknown timezone") {
		t.Errorf("bad zone: %q", errOut)
	}
	must(2, "schedule", "create", "nocron", "--", "true")
	must(2, "schedule", "create", "nocmd", "--cron", "@hourly")
	if errOut := must(1, "schedule", "create", "ping", "--cron", "@hourly", "--", "true"); !strings.Contains(errOut, "already exists") {
		t.Errorf("duplicate: %q", errOut)
	}

	// A run, its history and its output.
	if out := must(0, "schedule", "run-now", "ping"); !strings.Contains(out, "of schedule ping started") {
		t.Errorf("run-now: %q", out)
	}
	waitRun(t, s, "ping")
	out = must(0, "schedule", "runs", "ping")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "run-now") || !strings.Contains(lines[1], " 0 ") {
		t.Errorf("runs table: %q", out)
	}
	if out := must(0, "schedule", "runs", "ping", "--output"); out != "hello from curl -sS https://x.example\n" {
		t.Errorf("runs --output: %q", out)
	}
	var runs []api.ScheduleRun
	if err := json.Unmarshal([]byte(must(0, "schedule", "runs", "ping", "--json")), &runs); err != nil || len(runs) != 1 || runs[0].Sandbox != "sb1" {
		t.Errorf("runs --json: %+v, %v", runs, err)
	}

	// A schedule whose vault is gone is failing, and says why.
	must(0, "schedule", "create", "broken", "--cron", "@daily", "--vault", "gone", "--", "true")
	must(0, "schedule", "run-now", "broken")
	waitRun(t, s, "broken")
	if out := must(0, "schedule", "runs", "broken"); !strings.Contains(out, `vault "gone": vault archived`) {
		t.Errorf("failing runs: %q", out)
	}

	must(0, "schedule", "pause", "ping")
	out = must(0, "schedule", "list")
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "NAME") || !strings.Contains(rows[0], "LAST-EXIT") ||
		!strings.HasSuffix(rows[1], "failing") || !strings.HasSuffix(rows[2], "paused") || !strings.Contains(rows[2], " 0 ") {
		t.Errorf("list: %q", out)
	}
	if out := must(0, "schedule", "resume", "ping"); !strings.Contains(out, "schedule ping active, next run") {
		t.Errorf("resume: %q", out)
	}
	var list []api.Schedule
	if err := json.Unmarshal([]byte(must(0, "schedule", "list", "--json")), &list); err != nil || len(list) != 2 || list[1].State() != "active" {
		t.Errorf("list --json: %+v, %v", list, err)
	}

	out = must(0, "schedule", "show", "ping")
	for _, want := range []string{"name:", "ping", "timeout:", "5s", "vaults:", "command:", "curl -sS https://x.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q: %q", want, out)
		}
	}

	must(0, "schedule", "rm", "ping")
	if errOut := must(1, "schedule", "show", "ping"); !strings.Contains(errOut, `schedule "ping": not found`) {
		t.Errorf("show after rm: %q", errOut)
	}
	must(2, "schedule", "frobnicate")
	must(2, "schedule", "show")
}

func TestScheduleHelp(t *testing.T) {
	for _, sub := range []string{"create", "list", "show", "pause", "resume", "rm", "run-now", "runs"} {
		var out, errb bytes.Buffer
		if code := Main([]string{"schedule", sub, "--help"}, nil, &out, &errb); code != 0 {
			t.Errorf("schedule %s --help: exit %d, stderr %q", sub, code, errb.String())
		}
		if !strings.Contains(out.String(), "usage: keygate schedule "+sub) || !strings.Contains(out.String(), "Examples:") {
			t.Errorf("schedule %s --help: %q", sub, out.String())
		}
	}
}
