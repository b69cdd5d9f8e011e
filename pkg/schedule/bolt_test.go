package schedule

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

func openTestBolt(t *testing.T) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.db")
	st, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func TestBoltSchedules(t *testing.T) {
	st, path := openTestBolt(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, name := range []string{"b", "a"} {
		if err := st.CreateSchedule(Schedule{Spec: spec(name), Created: now}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateSchedule(Schedule{Spec: spec("a")}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate create: %v", err)
	}

	got, err := st.UpdateSchedule("a", func(s *Schedule) error { s.Paused = true; return nil })
	if err != nil || !got.Paused {
		t.Fatalf("UpdateSchedule = %+v, %v", got, err)
	}
	refuse := errors.New("no")
	if _, err := st.UpdateSchedule("a", func(s *Schedule) error { s.Paused = false; return refuse }); !errors.Is(err, refuse) {
		t.Errorf("failed update: %v", err)
	}
	if _, err := st.UpdateSchedule("zz", func(*Schedule) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of unknown: %v", err)
	}

	// Everything survives reopening the file.
	st.Close()
	st, err = OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	list, err := st.Schedules()
	if err != nil || len(list) != 2 || list[0].Name != "a" || !list[0].Paused || !list[1].Created.Equal(now) {
		t.Fatalf("Schedules = %+v, %v", list, err)
	}
}

func TestBoltRunHistory(t *testing.T) {
	st, _ := openTestBolt(t)
	if err := st.CreateSchedule(Schedule{Spec: spec("a")}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	run := func(i int) Run {
		return Run{Schedule: "a", ID: fmt.Sprintf("r%d", i), Started: t0.Add(time.Duration(i) * time.Second)}
	}
	for i := range 5 {
		if err := st.PutRun(run(i), 3); err != nil {
			t.Fatal(err)
		}
	}
	// Replacing a run does not trim, and keeps its place.
	r := run(3)
	r.Ended, r.ExitCode = t0.Add(time.Minute), 7
	if err := st.PutRun(r, 1); err != nil {
		t.Fatal(err)
	}

	runs, err := st.Runs("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[r4 r3 r2]" || runs[1].ExitCode != 7 {
		t.Errorf("runs = %v, r3 exit %d", ids, runs[1].ExitCode)
	}
	if runs, _ := st.Runs("a", 1); len(runs) != 1 || runs[0].ID != "r4" {
		t.Errorf("Runs with limit 1 = %+v", runs)
	}
	if err := st.PutRun(Run{Schedule: "zz", ID: "x"}, 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("run of unknown schedule: %v", err)
	}

	if err := st.DeleteSchedule("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Runs("a", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("runs after delete: %v", err)
	}
	// A schedule made again under the name starts with no history.
	if err := st.CreateSchedule(Schedule{Spec: spec("a")}); err != nil {
		t.Fatal(err)
	}
	if runs, err := st.Runs("a", 0); err != nil || len(runs) != 0 {
		t.Errorf("runs of new schedule = %+v, %v", runs, err)
	}
	if err := st.DeleteSchedule("zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of unknown: %v", err)
	}
}

func TestBoltClaim(t *testing.T) {
	st, _ := openTestBolt(t)
	ctx := context.Background()
	if err := st.CreateSchedule(Schedule{Spec: spec("a")}); err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 6, 1, 12, 0, 5, 0, time.UTC)
	claim := func(due time.Time, host string) bool {
		t.Helper()
		ok, err := st.Claim(ctx, "a", due, host)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !claim(due, "h1") || claim(due, "h2") || !claim(due, "h1") {
		t.Error("a due time is not held by its first claimant alone")
	}
	if !claim(due.Add(5*time.Second), "h2") {
		t.Error("next due time not claimable")
	}
	// Claims far older than the newest are dropped.
	if !claim(due.Add(2*claimHorizon), "h2") || !claim(due, "h2") {
		t.Error("old claim was kept past the horizon")
	}
	if _, err := st.Claim(ctx, "zz", due, "h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim for unknown schedule: %v", err)
	}
}

func TestBoltSecondOpenFails(t *testing.T) {
	_, path := openTestBolt(t)
	start := time.Now()
	if _, err := OpenBolt(path); err == nil {
		t.Fatal("second open of a locked file succeeded")
	}
	if time.Since(start) > 5*boltOpenTimeout {
		t.Error("second open waited too long")
	}
}
