//go:build linux

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// scheduleRun is the part of a recorded run the tests look at.
type scheduleRun struct {
	ID          string
	Trigger     string
	ExitCode    int `json:"exit_code"`
	Error       string
	TimedOut    bool     `json:"timed_out"`
	Sandbox     string   `json:"sandbox"`
	AuditSeqs   []uint64 `json:"audit_seqs"`
	Output      []byte
	Ended       time.Time
	Interrupted bool
}

func (a *agent) scheduleRuns(t *testing.T, name string) []scheduleRun {
	t.Helper()
	var runs []scheduleRun
	if err := json.Unmarshal([]byte(a.mustKG("", "schedule", "runs", name, "--json")), &runs); err != nil {
		t.Fatal(err)
	}
	return runs
}

// waitRuns waits until schedule name has at least n ended runs.
func (a *agent) waitRuns(t *testing.T, name string, n int, within time.Duration) []scheduleRun {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ended []scheduleRun
		for _, r := range a.scheduleRuns(t, name) {
			if !r.Ended.IsZero() {
				ended = append(ended, r)
			}
		}
		if len(ended) >= n {
			return ended
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule %s: %d ended runs after %v, want %d\nagent log:\n%s", name, len(ended), within, n, lastLines(a.log.String(), 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestSchedules runs a job every two seconds that calls the API through
// injection, and checks the run history, pause, timeouts, an archived
// vault and a restart.
func TestSchedules(t *testing.T) {
	w, a, key := credentialedAgent(t)

	a.mustKG("", "schedule", "create", "ping", "--cron", "@every 2s", "--vault", "v", "--",
		"sh", "-c", `curl -sS -m 10 -o /dev/null -w 'status %{http_code}\n' https://`+w.APIHost()+`/scheduled -H "Authorization: Bearer $API_KEY"`)

	runs := a.waitRuns(t, "ping", 2, 20*time.Second)
	for _, r := range runs {
		if r.ExitCode != 0 || r.Error != "" || !strings.Contains(string(r.Output), "status 200") || r.Sandbox == "" {
			t.Fatalf("run %+v", r)
		}
		if len(r.AuditSeqs) == 0 {
			t.Errorf("run %s lists no audit records", r.ID)
		}
	}
	var got int
	for _, req := range w.Requests(w.APIHost()) {
		if req.Path == "/scheduled" {
			got++
			if req.Header.Get("Authorization") != "Bearer "+key {
				t.Fatal("a scheduled run did not send the real key")
			}
		}
	}
	if got < 2 {
		t.Fatalf("the API saw %d scheduled requests", got)
	}
	if out := a.mustKG("", "schedule", "list"); !strings.Contains(out, "ping") || !strings.Contains(out, "active") {
		t.Fatalf("schedule list: %s", out)
	}

	t.Run("pause stops runs", func(t *testing.T) {
		a.mustKG("", "schedule", "pause", "ping")
		time.Sleep(500 * time.Millisecond) // a run in flight may still end
		before := len(a.scheduleRuns(t, "ping"))
		time.Sleep(5 * time.Second)
		if after := len(a.scheduleRuns(t, "ping")); after != before {
			t.Fatalf("%d runs while paused", after-before)
		}
		if out := a.mustKG("", "schedule", "list"); !strings.Contains(out, "paused") {
			t.Fatalf("schedule list: %s", out)
		}
	})

	t.Run("a run past its timeout is killed and recorded", func(t *testing.T) {
		a.mustKG("", "schedule", "create", "slow", "--cron", "@every 1h", "--timeout", "1s", "--", "sleep", "30")
		a.mustKG("", "schedule", "run-now", "slow")
		r := a.waitRuns(t, "slow", 1, 15*time.Second)[0]
		if !r.TimedOut || r.ExitCode == 0 {
			t.Fatalf("slow run: %+v", r)
		}
	})

	t.Run("archiving its vault fails the next run with the reason", func(t *testing.T) {
		a.mustKG("", "schedule", "create", "doomed", "--cron", "@every 1h", "--vault", "v", "--", "true")
		a.mustKG("", "vault", "archive", "v")
		a.mustKG("", "schedule", "run-now", "doomed")
		r := a.waitRuns(t, "doomed", 1, 15*time.Second)[0]
		if !strings.Contains(r.Error, "archived") {
			t.Fatalf("doomed run: %+v", r)
		}
		if out := a.mustKG("", "schedule", "list"); !strings.Contains(out, "failing") {
			t.Fatalf("schedule list does not show the failing schedule: %s", out)
		}
	})

	t.Run("after a restart the schedule continues", func(t *testing.T) {
		a.mustKG("", "vault", "create", "w")
		a.mustKG("", "schedule", "create", "tick", "--cron", "@every 2s", "--", "echo", "tick")
		a.waitRuns(t, "tick", 1, 15*time.Second)
		a.stop()
		a.start()
		before := len(a.waitRuns(t, "tick", 1, 5*time.Second))
		a.waitRuns(t, "tick", before+2, 20*time.Second)
	})

	history := a.mustKG("", "schedule", "runs", "ping", "--json")
	a.stop()
	if strings.Contains(a.log.String(), key) || strings.Contains(history, key) {
		t.Fatal("the secret leaked into the log or a run's recorded output")
	}
}
