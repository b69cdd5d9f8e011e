package schedule

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // pending; guarded by mu
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) TimerAt(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, at: at, c: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.c <- c.now
	} else {
		c.timers = append(c.timers, t)
	}
	return t
}

// Advance moves the clock on by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.c <- c.now
		return true
	})
}

// pending returns how many timers wait to fire.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

type fakeTimer struct {
	clock *fakeClock
	at    time.Time
	c     chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.clock.timers = slices.DeleteFunc(t.clock.timers, func(o *fakeTimer) bool { return o == t })
}

// fakeRunner runs jobs by calling fn, which defaults to printing the
// command and exiting 0. Every started job is sent on started.
type fakeRunner struct {
	started chan Job

	mu    sync.Mutex
	fn    func(ctx context.Context, job Job, out io.Writer) (Result, error) // guarded by mu
	calls int                                                               // guarded by mu
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{started: make(chan Job, 100)}
}

func (r *fakeRunner) set(fn func(ctx context.Context, job Job, out io.Writer) (Result, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn = fn
}

func (r *fakeRunner) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *fakeRunner) Run(ctx context.Context, job Job, out io.Writer) (Result, error) {
	r.mu.Lock()
	r.calls++
	fn := r.fn
	r.mu.Unlock()
	r.started <- job
	if fn != nil {
		return fn(ctx, job, out)
	}
	fmt.Fprintf(out, "ran %v\n", job.Argv)
	return Result{ExitCode: 0, Sandbox: "sb-" + job.RunID}, nil
}

// blockUntilDone is a runner body that runs until its context ends and
// then exits as if killed by SIGKILL.
func blockUntilDone(ctx context.Context, job Job, out io.Writer) (Result, error) {
	<-ctx.Done()
	return Result{ExitCode: 137, Sandbox: "sb-" + job.RunID}, nil
}

// harness is a scheduler on a fake clock and runner over a store: by
// default a bbolt file in a test directory.
type harness struct {
	t         *testing.T
	openStore func() Store // opens the store's data afresh
	store     Store        // the store schedulers use unless told otherwise
	clock     *fakeClock
	runner    *fakeRunner

	mu       sync.Mutex
	events   []Event  // guarded by mu
	finished []string // IDs of runs whose records are complete; guarded by mu
	seqQuery string   // the last AuditSeqs query; guarded by mu
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "schedules.db")
	return newHarnessOn(t, func() Store {
		st, err := OpenBolt(path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// newHarnessOn is a harness on the store openStore opens.
func newHarnessOn(t *testing.T, openStore func() Store) *harness {
	t.Helper()
	h := &harness{t: t, openStore: openStore, clock: newFakeClock(), runner: newFakeRunner()}
	h.open()
	t.Cleanup(func() { h.store.Close() })
	return h
}

// open (re)opens the store, as a restarted agent would.
func (h *harness) open() {
	h.t.Helper()
	h.store = h.openStore()
}

// scheduler starts a scheduler on the harness's store, clock and runner,
// stopped at the end of the test if not before.
func (h *harness) scheduler(host string, mod ...func(*Config)) *Scheduler {
	h.t.Helper()
	cfg := Config{
		Store: h.store, Runner: h.runner, Clock: h.clock, Host: host,
		Rescan: time.Hour, // the tests poke or advance; no background rereads
		Audit: func(ev Event) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events = append(h.events, ev)
		},
		AuditSeqs: func(sandbox string, since time.Time) ([]uint64, error) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.seqQuery = sandbox + " " + since.Format(time.RFC3339)
			return []uint64{1, 2}, nil
		},
	}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	s.finished = func(r Run) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.finished = append(h.finished, r.ID)
	}
	if err := s.Start(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

func (h *harness) eventsOf(kind string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, ev := range h.events {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ended returns the schedule's ended runs, newest first.
func (h *harness) ended(name string) []Run {
	h.t.Helper()
	runs, err := h.store.Runs(name, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.DeleteFunc(runs, func(r Run) bool { return r.Running() })
}

// waitRuns waits until the schedule has n ended runs and returns them,
// newest first.
func (h *harness) waitRuns(name string, n int) []Run {
	h.t.Helper()
	var runs []Run
	h.waitFor(fmt.Sprintf("%d ended runs of %s", n, name), func() bool {
		runs = h.ended(name)
		return len(runs) >= n
	})
	if len(runs) != n {
		h.t.Fatalf("%d ended runs, want %d: %s", len(runs), n, summary(runs))
	}
	return runs
}

// waitFinished waits until n runs have ended and been stored in full.
func (h *harness) waitFinished(n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d finished runs", n), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.finished) >= n
	})
}

// waitEvents waits until n events of kind were reported and returns them.
func (h *harness) waitEvents(kind string, n int) []Event {
	h.t.Helper()
	var evs []Event
	h.waitFor(fmt.Sprintf("%d %s events", n, kind), func() bool {
		evs = h.eventsOf(kind)
		return len(evs) >= n
	})
	if len(evs) != n {
		h.t.Fatalf("%d %s events, want %d: %+v", len(evs), kind, n, evs)
	}
	return evs
}

// summary describes runs without their output.
func summary(runs []Run) string {
	var b strings.Builder
	for _, r := range runs {
		fmt.Fprintf(&b, "\n  %s %s due %s exit %d error %q skipped %d timed-out %v interrupted %v",
			r.ID, r.Trigger, r.Due.Format(time.TimeOnly), r.ExitCode, r.Error, r.Skipped, r.TimedOut, r.Interrupted)
	}
	return b.String()
}

// waitNext waits until s has moved the schedule's next due time past the
// clock's reading, i.e. has dealt with everything due now.
func (h *harness) waitNext(s *Scheduler, name string) {
	h.t.Helper()
	h.waitFor("scheduler to pass "+name+"'s due time", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		j := s.jobs[name]
		return j != nil && j.next.After(h.clock.Now())
	})
}

// spec is a valid spec running every 5 seconds.
func spec(name string) Spec {
	return Spec{Name: name, Cron: "@every 5s", Vaults: []string{"v"}, Argv: []string{"curl", "https://api.example.com"}}
}
