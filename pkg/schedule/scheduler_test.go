package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// create stores sp through s and waits for s's loop to have timed it.
func (h *harness) create(s *Scheduler, sp Spec) Schedule {
	h.t.Helper()
	sc, err := s.Create(context.Background(), sp)
	if err != nil {
		h.t.Fatal(err)
	}
	h.waitNext(s, sp.Name)
	return sc
}

// step advances the clock by d and waits until every scheduler given has
// dealt with what is due.
func (h *harness) step(d time.Duration, ss ...*Scheduler) {
	h.t.Helper()
	h.clock.Advance(d)
	for _, s := range ss {
		for _, name := range h.names() {
			h.waitNext(s, name)
		}
	}
}

func (h *harness) names() []string {
	h.t.Helper()
	scheds, err := h.store.Schedules()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, sc := range scheds {
		if !sc.Paused {
			out = append(out, sc.Name)
		}
	}
	return out
}

// settle gives goroutines a moment to do what they should not.
func settle() { time.Sleep(50 * time.Millisecond) }

func TestRunsAtDueTimes(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a")
	sc := h.create(s, spec("ping"))
	if want := h.clock.Now().Add(5 * time.Second); !sc.NextRun.Equal(want) {
		t.Errorf("NextRun = %v, want %v", sc.NextRun, want)
	}

	h.step(5*time.Second, s)
	h.waitFinished(1)
	runs := h.waitRuns("ping", 1)
	r := runs[0]
	h.mu.Lock()
	if want := r.Sandbox + " " + r.Started.Format(time.RFC3339); h.seqQuery != want {
		t.Errorf("audit records looked up with %q, want %q", h.seqQuery, want)
	}
	h.mu.Unlock()
	if r.Trigger != TriggerCron || r.ExitCode != 0 || r.Error != "" || r.Host != "a" ||
		r.Sandbox != "sb-"+r.ID || !slices.Equal(r.AuditSeqs, []uint64{1, 2}) || r.AuditCount != 2 {
		t.Errorf("run = %+v", r)
	}
	if !r.Due.Equal(sc.Created.Add(5*time.Second)) || string(r.Output) != "ran [curl https://api.example.com]\n" {
		t.Errorf("due %v, output %q", r.Due, r.Output)
	}

	h.step(5*time.Second, s)
	h.waitFinished(2)
	evs := h.waitEvents(EventRun, 2)
	runs = h.waitRuns("ping", 2)
	if !runs[0].Due.Equal(r.Due.Add(5 * time.Second)) {
		t.Errorf("second run due %v, want %v", runs[0].Due, r.Due.Add(5*time.Second))
	}
	got, err := s.Show(context.Background(), "ping")
	if err != nil {
		t.Fatal(err)
	}
	if got.LastRunID != runs[0].ID || got.LastExit != 0 || got.Failing || got.State() != "active" ||
		!got.NextRun.Equal(runs[0].Due.Add(5*time.Second)) {
		t.Errorf("schedule = %+v", got)
	}
	if evs[0].Failed || !slices.Equal(evs[0].Vaults, []string{"v"}) || evs[0].Run != runs[1].ID {
		t.Errorf("events = %+v", evs)
	}
}

func TestPauseResume(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a")
	h.create(s, spec("ping"))
	h.step(5*time.Second, s)
	h.waitRuns("ping", 1)

	ctx := context.Background()
	sc, err := s.Pause(ctx, "ping")
	if err != nil || !sc.Paused || !sc.NextRun.IsZero() || sc.State() != "paused" {
		t.Fatalf("Pause = %+v, %v", sc, err)
	}
	for range 4 {
		h.clock.Advance(5 * time.Second)
		settle()
	}
	if n := h.runner.count(); n != 1 {
		t.Fatalf("%d runs while paused", n)
	}

	if sc, err = s.Resume(ctx, "ping"); err != nil || sc.Paused {
		t.Fatalf("Resume = %+v, %v", sc, err)
	}
	h.waitNext(s, "ping")
	h.step(5*time.Second, s)
	runs := h.waitRuns("ping", 2)
	if runs[0].Trigger != TriggerCron {
		t.Errorf("run after resume has trigger %q; due times while paused are not missed", runs[0].Trigger)
	}
}

func TestRunNow(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a")
	sp := spec("yearly")
	sp.Cron = "0 0 1 1 *"
	h.create(s, sp)
	ctx := context.Background()
	if _, err := s.Pause(ctx, "yearly"); err != nil {
		t.Fatal(err)
	}

	r, err := s.RunNow(ctx, "yearly")
	if err != nil {
		t.Fatal(err)
	}
	if r.Trigger != TriggerRunNow || !r.Running() {
		t.Errorf("RunNow = %+v", r)
	}
	if runs := h.waitRuns("yearly", 1); runs[0].ID != r.ID || runs[0].ExitCode != 0 {
		t.Errorf("runs = %+v", runs)
	}

	release := make(chan struct{})
	h.runner.set(func(ctx context.Context, job Job, out io.Writer) (Result, error) {
		<-release
		return Result{}, nil
	})
	if _, err := s.RunNow(ctx, "yearly"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunNow(ctx, "yearly"); !errors.Is(err, ErrBusy) {
		t.Errorf("RunNow with a run in progress: %v, want ErrBusy", err)
	}
	close(release)
	h.waitRuns("yearly", 2)
	if _, err := s.RunNow(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RunNow of unknown schedule: %v", err)
	}
}

func TestTimeoutKillsRun(t *testing.T) {
	h := newHarness(t)
	h.runner.set(blockUntilDone)
	s := h.scheduler("a")
	sp := spec("slow")
	sp.Timeout = 3 * time.Second
	h.create(s, sp)

	h.step(5*time.Second, s)
	<-h.runner.started
	settle()
	if len(h.ended("slow")) != 0 {
		t.Fatal("run ended before its timeout")
	}
	h.clock.Advance(3 * time.Second)
	h.waitFinished(1)
	evs := h.waitEvents(EventRun, 1)
	r := h.waitRuns("slow", 1)[0]
	if !r.TimedOut || r.ExitCode != 137 || r.Interrupted || r.Error != "" {
		t.Errorf("run = %+v", r)
	}
	sc, _ := s.Show(context.Background(), "slow")
	if !sc.LastTimedOut || sc.LastExit != 137 || sc.Failing {
		t.Errorf("schedule = %+v", sc)
	}
	if !evs[0].Failed || !strings.Contains(evs[0].Detail, "timeout") {
		t.Errorf("events = %+v", evs)
	}
}

func TestMaxConcurrentSkips(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	h.runner.set(func(ctx context.Context, job Job, out io.Writer) (Result, error) {
		<-release
		return Result{ExitCode: 3}, nil
	})
	s := h.scheduler("a")
	h.create(s, spec("long"))

	h.step(5*time.Second, s)
	<-h.runner.started
	h.step(5*time.Second, s)
	h.step(5*time.Second, s)
	var runs []Run
	h.waitFor("two coalesced skips", func() bool {
		runs = h.ended("long")
		return len(runs) == 1 && runs[0].Skipped == 2
	})
	if r := runs[0]; r.ExitCode != -1 || !strings.Contains(r.Error, "max-concurrent 1") {
		t.Errorf("skip record = %+v", r)
	}
	if n := h.runner.count(); n != 1 {
		t.Errorf("%d runs started, want 1", n)
	}

	close(release)
	h.waitFinished(1)
	h.step(5*time.Second, s)
	h.waitFinished(2)
	runs = h.waitRuns("long", 3)
	if runs[0].Skipped != 0 || runs[1].Skipped != 2 || runs[2].Skipped != 0 || runs[0].ExitCode != 3 {
		t.Errorf("history = %+v", runs)
	}
	sc, _ := s.Show(context.Background(), "long")
	if sc.Failing || sc.LastExit != 3 {
		t.Errorf("skips or a non-zero exit made the schedule %+v", sc)
	}
	if evs := h.eventsOf(EventSkip); len(evs) != 2 {
		t.Errorf("skip events = %+v", evs)
	}
}

func TestMaxConcurrentTwo(t *testing.T) {
	h := newHarness(t)
	h.runner.set(blockUntilDone)
	s := h.scheduler("a")
	sp := spec("pair")
	sp.MaxConcurrent = 2
	h.create(s, sp)
	for range 3 {
		h.step(5*time.Second, s)
	}
	h.waitFor("a skip", func() bool { return len(h.ended("pair")) == 1 })
	if n := h.runner.count(); n != 2 {
		t.Errorf("%d runs in progress, want 2", n)
	}
}

func TestMissedWhileDown(t *testing.T) {
	tests := []struct {
		name   string
		policy MissedPolicy
		down   time.Duration
		missed bool
	}{
		{"once after ten intervals", MissedOnce, 50 * time.Second, true},
		{"skip after ten intervals", MissedSkip, 50 * time.Second, false},
		{"nothing missed within an interval", MissedOnce, 2 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.scheduler("a")
			h.create(a, spec("ping"))
			h.step(5*time.Second, a)
			first := h.waitRuns("ping", 1)[0]
			if err := a.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}

			h.clock.Advance(tt.down)
			b := h.scheduler("a", func(c *Config) { c.MissedPolicy = tt.policy })
			h.waitNext(b, "ping")
			want := 1
			if tt.missed {
				want = 2
				runs := h.waitRuns("ping", want)
				latest := first.Due.Add(tt.down.Truncate(5 * time.Second))
				if runs[0].Trigger != TriggerMissed || !runs[0].Due.Equal(latest) {
					t.Errorf("missed run = %+v, want due %v", runs[0], latest)
				}
			}
			settle()
			if n := h.runner.count(); n != want {
				t.Fatalf("%d runs after start, want %d", n, want)
			}

			// The schedule then continues on its due times.
			next := first.Due.Add((tt.down/(5*time.Second) + 1) * 5 * time.Second)
			h.clock.Advance(next.Sub(h.clock.Now()))
			runs := h.waitRuns("ping", want+1)
			if runs[0].Trigger != TriggerCron || !runs[0].Due.Equal(next) {
				t.Errorf("run after restart = %+v, want cron due %v", runs[0], next)
			}
		})
	}
}

func TestRestartContinues(t *testing.T) {
	h := newHarness(t)
	a := h.scheduler("a")
	h.create(a, spec("ping"))
	sp := spec("held")
	h.create(a, sp)
	ctx := context.Background()
	if _, err := a.Pause(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	h.step(5*time.Second, a)
	h.waitRuns("ping", 1)
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RunNow(ctx, "ping"); !errors.Is(err, ErrStopped) {
		t.Errorf("RunNow after Stop: %v", err)
	}

	// A new process: the file is reopened and a new scheduler started.
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	h.open()
	b := h.scheduler("a")
	h.waitNext(b, "ping")
	h.step(5*time.Second, b)
	runs := h.waitRuns("ping", 2)
	if runs[0].Trigger != TriggerCron {
		t.Errorf("run after restart = %+v", runs[0])
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != 2 || !list[0].Paused || list[1].Paused {
		t.Errorf("List = %+v, %v", list, err)
	}
	if len(h.ended("held")) != 0 {
		t.Error("paused schedule ran after restart")
	}
}

func TestRunThatCannotStart(t *testing.T) {
	h := newHarness(t)
	archived := errors.New(`vault "v": vault archived`)
	h.runner.set(func(ctx context.Context, job Job, out io.Writer) (Result, error) {
		return Result{}, archived
	})
	s := h.scheduler("a")
	h.create(s, spec("ping"))
	h.step(5*time.Second, s)
	h.waitFinished(1)
	evs := h.waitEvents(EventRun, 1)
	r := h.waitRuns("ping", 1)[0]
	if r.Error != archived.Error() || r.ExitCode != -1 {
		t.Errorf("run = %+v", r)
	}
	ctx := context.Background()
	sc, _ := s.Show(ctx, "ping")
	if !sc.Failing || sc.LastError != archived.Error() || sc.State() != "failing" {
		t.Errorf("schedule = %+v", sc)
	}
	if !evs[0].Failed || !strings.Contains(evs[0].Detail, "vault archived") {
		t.Errorf("events = %+v", evs)
	}

	// It is tried again at its next due time, and recovers.
	h.runner.set(nil)
	h.step(5*time.Second, s)
	h.waitFinished(2)
	if sc, _ = s.Show(ctx, "ping"); sc.Failing || sc.LastError != "" {
		t.Errorf("schedule after a good run = %+v", sc)
	}
}

func TestHistoryAndOutputBounded(t *testing.T) {
	h := newHarness(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	h.runner.set(func(ctx context.Context, job Job, out io.Writer) (Result, error) {
		for b := big; len(b) > 0; b = b[min(len(b), 4096):] {
			out.Write(b[:min(len(b), 4096)])
		}
		fmt.Fprintf(out, "end of %s", job.RunID)
		return Result{}, nil
	})
	s := h.scheduler("a", func(c *Config) { c.History = 3 })
	h.create(s, spec("chatty"))
	for i := range 5 {
		h.step(5*time.Second, s)
		h.waitFinished(i + 1)
	}
	runs := h.waitRuns("chatty", 3)
	for _, r := range runs {
		want := append(append([]byte(nil), big...), "end of "+r.ID...)
		want = want[len(want)-MaxOutput:]
		if !bytes.Equal(r.Output, want) {
			t.Errorf("run %s output: %d bytes, want the last %d", r.ID, len(r.Output), MaxOutput)
		}
	}
	if !runs[0].Started.After(runs[2].Started) {
		t.Error("history is not newest first")
	}
}

func TestTwoHostsRunEachDueOnce(t *testing.T) {
	h := newHarness(t)
	a := h.scheduler("a")
	b := h.scheduler("b")
	h.create(a, spec("ping"))
	b.poke()
	h.waitNext(b, "ping")

	const dues = 10
	for i := range dues {
		h.step(5*time.Second, a, b)
		h.waitRuns("ping", i+1)
	}
	settle()
	runs := h.ended("ping")
	seen := map[time.Time]string{}
	for _, r := range runs {
		if other, ok := seen[r.Due]; ok {
			t.Errorf("due %v ran on %s and %s", r.Due, other, r.Host)
		}
		seen[r.Due] = r.Host
	}
	if len(runs) != dues || h.runner.count() != dues {
		t.Errorf("%d runs recorded, %d started, want %d", len(runs), h.runner.count(), dues)
	}
}

func TestRemoveKillsRuns(t *testing.T) {
	h := newHarness(t)
	h.runner.set(blockUntilDone)
	s := h.scheduler("a")
	h.create(s, spec("doomed"))
	h.step(5*time.Second, s)
	<-h.runner.started

	ctx := context.Background()
	if err := s.Remove(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the run to end", func() bool { return len(h.eventsOf(EventRun)) == 1 })
	if ev := h.eventsOf(EventRun)[0]; !strings.Contains(ev.Detail, "interrupted") {
		t.Errorf("event = %+v", ev)
	}
	if _, err := s.Runs(ctx, "doomed", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Runs of removed schedule: %v", err)
	}
	if err := s.Remove(ctx, "doomed"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v", err)
	}
}

func TestStopInterruptsRuns(t *testing.T) {
	h := newHarness(t)
	h.runner.set(blockUntilDone)
	s := h.scheduler("a")
	h.create(s, spec("ping"))
	h.step(5*time.Second, s)
	<-h.runner.started
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := h.waitRuns("ping", 1)[0]
	if !r.Interrupted || r.TimedOut || r.Error != "" {
		t.Errorf("run = %+v", r)
	}
	sc, _ := h.store.Schedule("ping")
	if sc.Failing {
		t.Error("an interrupted run made the schedule failing")
	}
}

func TestAbandonedRunClosedOnStart(t *testing.T) {
	h := newHarness(t)
	now := h.clock.Now()
	if err := h.store.CreateSchedule(Schedule{Spec: spec("ping"), Created: now, Updated: now}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"a", "b"} {
		r := Run{Schedule: "ping", ID: "run-" + host, Host: host, Trigger: TriggerCron, Started: now, ExitCode: -1}
		if err := h.store.PutRun(r, 10); err != nil {
			t.Fatal(err)
		}
	}
	h.scheduler("a")
	runs, _ := h.store.Runs("ping", 0)
	for _, r := range runs {
		if closed := !r.Running() && r.Interrupted; closed != (r.Host == "a") {
			t.Errorf("run of host %s: %+v", r.Host, r)
		}
	}
}

func TestCreateValidates(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a", func(c *Config) {
		c.Check = func(sp Spec) error {
			if slices.Contains(sp.Vaults, "gone") {
				return errors.New(`vault "gone": not found`)
			}
			return nil
		}
	})
	ctx := context.Background()
	sc, err := s.Create(ctx, spec("ok"))
	if err != nil || sc.Timezone != "UTC" || sc.MaxConcurrent != 1 {
		t.Fatalf("Create = %+v, %v", sc, err)
	}
	if _, err := s.Create(ctx, spec("ok")); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}

	tests := []struct {
		name string
		mod  func(*Spec)
	}{
		{"bad name", func(sp *Spec) { sp.Name = "Bad Name" }},
		{"no command", func(sp *Spec) { sp.Argv = nil }},
		{"bad cron", func(sp *Spec) { sp.Cron = "sometimes" }},
		{"unknown zone", func(sp *Spec) { sp.Timezone = "Europe/Atlantis" }},
		{"negative timeout", func(sp *Spec) { sp.Timeout = -time.Second }},
		{"too concurrent", func(sp *Spec) { sp.MaxConcurrent = MaxMaxConcurrent + 1 }},
		{"bad mode", func(sp *Spec) { sp.Mode = "wide-open" }},
		{"bad runtime", func(sp *Spec) { sp.Runtime = "docker" }},
		{"check refuses", func(sp *Spec) { sp.Vaults = []string{"gone"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := spec("new")
			tt.mod(&sp)
			_, err := s.Create(ctx, sp)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestUpdateCountsFromNow(t *testing.T) {
	h := newHarness(t)
	s := h.scheduler("a")
	h.create(s, spec("ping"))
	h.clock.Advance(3 * time.Second)
	sp := spec("ping")
	sp.Cron = "*/10 * * * * *"
	sc, err := s.Update(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 6, 1, 12, 0, 10, 0, time.UTC); !sc.NextRun.Equal(want) {
		t.Errorf("NextRun = %v, want %v", sc.NextRun, want)
	}
	h.waitNext(s, "ping")
	h.step(7*time.Second, s)
	if r := h.waitRuns("ping", 1)[0]; r.Trigger != TriggerCron || r.Due.Second() != 10 {
		t.Errorf("run = %+v", r)
	}
	if _, err := s.Update(context.Background(), spec("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of unknown schedule: %v", err)
	}
}
