package schedule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// errNotNewest makes UpdateSchedule store nothing: a run that ended is
// not the schedule's newest, whose outcome the schedule shows.
var errNotNewest = errors.New("not the newest run")

// start begins a run of sc for due, unless MaxConcurrent of its runs are
// in progress here, in which case it returns how many are and starts
// nothing. A run for a due time (not run-now) also stores the schedule's
// LastDue and its next due time.
func (s *Scheduler) start(sc Schedule, due time.Time, trigger string, next time.Time) (Run, int, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return Run{}, 0, ErrStopped
	}
	j := s.jobs[sc.Name]
	if j == nil {
		// RunNow before the loop has looked at the schedule.
		j = &job{running: make(map[string]context.CancelCauseFunc)}
		s.jobs[sc.Name] = j
	}
	if n := len(j.running); n >= max(sc.MaxConcurrent, 1) {
		s.mu.Unlock()
		return Run{}, n, nil
	}
	r := Run{
		Schedule: sc.Name, ID: newRunID(), Trigger: trigger, Due: due, Host: s.cfg.Host,
		Started: s.now(), ExitCode: -1,
	}
	ctx, cancel := context.WithCancelCause(s.runCtx)
	j.running[r.ID] = cancel
	s.runs.Add(1) // under mu, so never after Stop has begun to wait
	s.mu.Unlock()

	abort := func(err error) (Run, int, error) {
		s.mu.Lock()
		delete(j.running, r.ID)
		s.mu.Unlock()
		cancel(err)
		s.runs.Done()
		return Run{}, 0, err
	}
	if err := s.cfg.Store.PutRun(r, s.cfg.History); err != nil {
		return abort(fmt.Errorf("record run: %w", err))
	}
	_, err := s.cfg.Store.UpdateSchedule(sc.Name, func(st *Schedule) error {
		st.LastRun, st.LastRunID = r.Started, r.ID
		st.LastExit, st.LastTimedOut = -1, false // until it ends
		if trigger != TriggerRunNow {
			markDue(st, due, next)
		}
		return nil
	})
	if err != nil {
		return abort(fmt.Errorf("record run: %w", err))
	}
	s.log.Info("run started", logSchedule, sc.Name, logRun, r.ID, logTrigger, trigger, logDue, due)
	go s.execute(ctx, cancel, j, sc, r)
	return r, 0, nil
}

// markDue records in st that due was claimed and next is the next due
// time.
func markDue(st *Schedule, due, next time.Time) {
	st.LastDue = maxTime(st.LastDue, due)
	if !st.Paused {
		st.NextRun = next
	}
}

// execute runs r to its end and records the outcome.
func (s *Scheduler) execute(ctx context.Context, cancel context.CancelCauseFunc, j *job, sc Schedule, r Run) {
	defer s.runs.Done()
	if sc.Timeout > 0 {
		timer := s.clock.TimerAt(r.Started.Add(sc.Timeout))
		go func() {
			select {
			case <-timer.C():
				cancel(errTimeout)
			case <-ctx.Done():
				timer.Stop()
			}
		}()
	}

	out := newTail(MaxOutput)
	res, err := s.cfg.Runner.Run(ctx, Job{Spec: sc.Spec, RunID: r.ID, Trigger: r.Trigger}, out)
	cause := context.Cause(ctx)
	cancel(nil)
	s.mu.Lock()
	delete(j.running, r.ID)
	s.mu.Unlock()

	r.Ended = s.now()
	r.Output = out.Bytes()
	r.Sandbox = res.Sandbox
	if err != nil {
		r.Error = err.Error()
	} else {
		r.ExitCode = res.ExitCode
	}
	switch {
	case errors.Is(cause, errTimeout):
		r.TimedOut = true
	case cause != nil:
		r.Interrupted = true
	}
	s.finish(sc, r)
}

// finish reports an ended run, collects its audit records, stores it and
// updates its schedule if it is the newest run.
func (s *Scheduler) finish(sc Schedule, r Run) {
	failed := r.Error != "" || r.TimedOut
	detail := describe(r)
	attrs := []any{logSchedule, r.Schedule, logRun, r.ID, "sandbox", r.Sandbox, "outcome", detail}
	if failed {
		s.log.Warn("run ended", attrs...)
	} else {
		s.log.Info("run ended", attrs...)
	}
	// The event goes first: the record it makes is the run's own, and
	// once it is durable so is everything the sandbox appended before.
	s.emit(Event{Kind: EventRun, Schedule: r.Schedule, Run: r.ID, Sandbox: r.Sandbox,
		Vaults: sc.Vaults, Failed: failed, Detail: detail})
	if s.cfg.AuditSeqs != nil && r.Sandbox != "" {
		seqs, err := s.cfg.AuditSeqs(r.Sandbox, r.Started)
		if err != nil {
			s.log.Error("find the run's audit records", logSchedule, r.Schedule, logRun, r.ID, logErr, err)
		}
		r.AuditCount = len(seqs)
		r.AuditSeqs = seqs[:min(len(seqs), MaxAuditSeqs)]
	}

	if err := s.cfg.Store.PutRun(r, s.cfg.History); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("record run", logSchedule, r.Schedule, logRun, r.ID, logErr, err)
	}
	_, err := s.cfg.Store.UpdateSchedule(r.Schedule, func(st *Schedule) error {
		if st.LastRunID != r.ID {
			return errNotNewest
		}
		st.LastExit, st.LastTimedOut = r.ExitCode, r.TimedOut
		// An interrupted run says nothing about whether the schedule
		// can run; it keeps the state it had.
		if !r.Interrupted {
			st.Failing, st.LastError = r.Error != "", r.Error
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNotNewest) && !errors.Is(err, ErrNotFound) {
		s.log.Error("record run outcome", logSchedule, r.Schedule, logRun, r.ID, logErr, err)
	}
	if s.finished != nil {
		s.finished(r)
	}
}

// describe says in one line what became of an ended run.
func describe(r Run) string {
	took := r.Ended.Sub(r.Started).Round(time.Millisecond)
	head := fmt.Sprintf("schedule %q run %s (%s)", r.Schedule, r.ID, r.Trigger)
	switch {
	case r.Error != "" && r.Interrupted:
		return fmt.Sprintf("%s: interrupted before it started: %s", head, r.Error)
	case r.Error != "":
		return fmt.Sprintf("%s: could not run: %s", head, r.Error)
	case r.TimedOut:
		return fmt.Sprintf("%s: killed at its timeout after %v, exit %d", head, took, r.ExitCode)
	case r.Interrupted:
		return fmt.Sprintf("%s: interrupted after %v, exit %d", head, took, r.ExitCode)
	}
	return fmt.Sprintf("%s: exit %d after %v", head, r.ExitCode, took)
}

// skip records that due was not run because busy runs of sc are in
// progress. Consecutive skips share one record, so a long run does not
// push real runs out of the history.
func (s *Scheduler) skip(sc Schedule, due time.Time, trigger string, busy int, next time.Time) {
	now := s.now()
	r := Run{
		Schedule: sc.Name, ID: newRunID(), Trigger: trigger, Due: due, Host: s.cfg.Host,
		Started: now, ExitCode: -1,
	}
	if prev, err := s.cfg.Store.Runs(sc.Name, 1); err == nil && len(prev) == 1 &&
		prev[0].Skipped > 0 && prev[0].Host == s.cfg.Host {
		r = prev[0]
	}
	r.Skipped++
	r.Ended = now
	r.Error = fmt.Sprintf("%d due %s skipped: %d %s still in progress (max-concurrent %d)",
		r.Skipped, plural(r.Skipped, "time", "times"), busy, plural(busy, "run", "runs"), sc.MaxConcurrent)

	if err := s.cfg.Store.PutRun(r, s.cfg.History); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("record skipped run", logSchedule, sc.Name, logErr, err)
	}
	_, err := s.cfg.Store.UpdateSchedule(sc.Name, func(st *Schedule) error {
		markDue(st, due, next)
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("record skipped run", logSchedule, sc.Name, logErr, err)
	}
	s.log.Warn("due run skipped", logSchedule, sc.Name, logDue, due, "in_progress", busy)
	s.emit(Event{Kind: EventSkip, Schedule: sc.Name, Run: r.ID, Vaults: sc.Vaults,
		Detail: fmt.Sprintf("schedule %q: due run at %s skipped: %d %s still in progress (max-concurrent %d)",
			sc.Name, due.Format(time.RFC3339), busy, plural(busy, "run", "runs"), sc.MaxConcurrent)})
}

func (s *Scheduler) emit(ev Event) {
	if s.cfg.Audit != nil {
		s.cfg.Audit(ev)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func newRunID() string {
	var b [4]byte
	rand.Read(b[:]) // never fails (crypto/rand's documented guarantee since Go 1.24)
	return hex.EncodeToString(b[:])
}
