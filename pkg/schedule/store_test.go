package schedule

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// storeOpener opens an empty store of one engine, closed when the test
// ends, and returns it with a function that closes it and opens its data
// again, as a restarted agent would.
type storeOpener func(t *testing.T) (st Store, reopen func() Store)

// storeTests are the checks every engine must pass.
var storeTests = []struct {
	name string
	fn   func(t *testing.T, st Store, reopen func() Store)
}{
	{"Schedules", testStoreSchedules},
	{"RunHistory", testStoreRunHistory},
	{"Claim", testStoreClaim},
	{"ConcurrentUpdates", testStoreConcurrentUpdates},
	{"ConcurrentClaims", testStoreConcurrentClaims},
	{"ConcurrentRuns", testStoreConcurrentRuns},
}

// runStoreTests runs storeTests on stores that open opens.
func runStoreTests(t *testing.T, open storeOpener) {
	for _, tt := range storeTests {
		t.Run(tt.name, func(t *testing.T) {
			st, reopen := open(t)
			tt.fn(t, st, reopen)
		})
	}
}

func mustCreate(t *testing.T, st Store, name string) {
	t.Helper()
	if err := st.CreateSchedule(Schedule{Spec: spec(name)}); err != nil {
		t.Fatal(err)
	}
}

func testStoreSchedules(t *testing.T, st Store, reopen func() Store) {
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
	_, err = st.UpdateSchedule("a", func(s *Schedule) error { s.Paused = false; return refuse })
	if !errors.Is(err, refuse) {
		t.Errorf("failed update: %v", err)
	}
	if _, err := st.UpdateSchedule("zz", func(*Schedule) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of unknown: %v", err)
	}
	if _, err := st.Schedule("zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Schedule of unknown: %v", err)
	}

	// Everything survives reopening.
	st = reopen()
	list, err := st.Schedules()
	if err != nil || len(list) != 2 || list[0].Name != "a" || !list[0].Paused || !list[1].Created.Equal(now) {
		t.Fatalf("Schedules = %+v, %v", list, err)
	}
	if sc, err := st.Schedule("a"); err != nil || !sc.Paused || sc.Cron != "@every 5s" {
		t.Errorf("Schedule = %+v, %v", sc, err)
	}
}

func testStoreRunHistory(t *testing.T, st Store, _ func() Store) {
	mustCreate(t, st, "a")
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
	if ids := runIDs(runs); fmt.Sprint(ids) != "[r4 r3 r2]" || runs[1].ExitCode != 7 {
		t.Errorf("runs = %v, r3 exit %d", ids, runs[1].ExitCode)
	}
	if runs, _ := st.Runs("a", 1); len(runs) != 1 || runs[0].ID != "r4" {
		t.Errorf("Runs with limit 1 = %+v", runs)
	}
	// A new run older than the kept ones is dropped at once.
	if err := st.PutRun(run(-1), 3); err != nil {
		t.Fatal(err)
	}
	if runs, _ := st.Runs("a", 0); fmt.Sprint(runIDs(runs)) != "[r4 r3 r2]" {
		t.Errorf("after an old run: %v", runIDs(runs))
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
	mustCreate(t, st, "a")
	if runs, err := st.Runs("a", 0); err != nil || len(runs) != 0 {
		t.Errorf("runs of new schedule = %+v, %v", runs, err)
	}
	if err := st.DeleteSchedule("zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of unknown: %v", err)
	}
}

func runIDs(runs []Run) []string {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

func testStoreClaim(t *testing.T, st Store, _ func() Store) {
	ctx := context.Background()
	mustCreate(t, st, "a")
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
	if _, err := st.Claim(ctx, "zz", due, "h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("claim for unknown schedule: %v", err)
	}

	// Claims go with their schedule.
	if err := st.DeleteSchedule("a"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, st, "a")
	if !claim(due, "h2") {
		t.Error("claim of a removed schedule outlived it")
	}
}

// testStoreConcurrentUpdates makes updates race: none may be lost.
func testStoreConcurrentUpdates(t *testing.T, st Store, _ func() Store) {
	mustCreate(t, st, "a")
	const workers, each = 4, 10
	increment := func(s *Schedule) error { s.LastExit++; return nil }
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := st.UpdateSchedule("a", increment); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if sc, err := st.Schedule("a"); err != nil || sc.LastExit != workers*each {
		t.Errorf("after %d increments: %d, %v", workers*each, sc.LastExit, err)
	}
}

// testStoreConcurrentClaims makes hosts race for each due time: exactly
// one may win it.
func testStoreConcurrentClaims(t *testing.T, st Store, _ func() Store) {
	mustCreate(t, st, "a")
	due := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	const hosts = 6
	for i := range 5 {
		due := due.Add(time.Duration(i) * time.Second)
		var mu sync.Mutex
		var winners []string
		var wg sync.WaitGroup
		for h := range hosts {
			host := fmt.Sprintf("h%d", h)
			wg.Go(func() {
				ok, err := st.Claim(context.Background(), "a", due, host)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					winners = append(winners, host)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Errorf("due %v won by %v", due, winners)
		}
	}
}

// testStoreConcurrentRuns stores new runs from several writers at once:
// the history keeps exactly the newest.
func testStoreConcurrentRuns(t *testing.T, st Store, _ func() Store) {
	mustCreate(t, st, "a")
	t0 := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	const workers, each, keep = 4, 8, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := i*workers + w
				r := Run{Schedule: "a", ID: fmt.Sprintf("r%02d", n)}
				r.Started = t0.Add(time.Duration(n) * time.Second)
				if err := st.PutRun(r, keep); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	runs, err := st.Runs("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := workers*each - 1; n >= workers*each-keep; n-- {
		want = append(want, fmt.Sprintf("r%02d", n))
	}
	if got := runIDs(runs); !slices.Equal(got, want) {
		t.Errorf("history = %v, want %v", got, want)
	}
}
