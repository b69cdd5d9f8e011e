package schedule

import (
	"context"
	"errors"
	"time"
)

// loop wakes at each due time, at least every Rescan, and whenever poked,
// and runs what is due.
func (s *Scheduler) loop(ctx context.Context) {
	defer close(s.loopDone)
	// startup stays set until a pass has read the store: due times found
	// passed in that pass were missed while no scheduler ran.
	startup := true
	for {
		now := s.now()
		next, ok := s.tick(ctx, now, startup)
		if ok {
			startup = false
		}
		if limit := now.Add(s.cfg.Rescan); next.IsZero() || next.After(limit) {
			next = limit
		}
		t := s.clock.TimerAt(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-s.wake:
			t.Stop()
		}
	}
}

// tick makes one pass over the store's schedules at now, starting what is
// due. It returns the earliest next due time (zero if none) and whether
// the store could be read.
func (s *Scheduler) tick(ctx context.Context, now time.Time, startup bool) (time.Time, bool) {
	scheds, err := s.cfg.Store.Schedules()
	if err != nil {
		s.log.Error("read schedules", logErr, err)
		return time.Time{}, false
	}
	s.forget(scheds)

	var earliest time.Time
	for _, sc := range scheds {
		if ctx.Err() != nil {
			break
		}
		next := s.visit(ctx, sc, now, startup)
		if !next.IsZero() && (earliest.IsZero() || next.Before(earliest)) {
			earliest = next
		}
	}
	return earliest, true
}

// forget drops the state of schedules that are no longer stored (removed
// through another host), killing their runs here.
func (s *Scheduler) forget(scheds []Schedule) {
	live := make(map[string]bool, len(scheds))
	for _, sc := range scheds {
		live[sc.Name] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, j := range s.jobs {
		if live[name] {
			continue
		}
		for _, cancel := range j.running {
			cancel(errRemoved)
		}
		delete(s.jobs, name)
	}
}

// visit starts sc if it is due and returns its next due time.
//
// A schedule is due when its next due time has come. If that was the only
// due time since the schedule was last looked at, it runs as "cron". If
// more have passed, or this is the first pass since start, the due times
// were missed: under MissedOnce it runs once as "missed", for the latest
// of them; under MissedSkip not at all. Either way its next due time is
// then the first after now, so a scheduler that was away never bursts.
func (s *Scheduler) visit(ctx context.Context, sc Schedule, now time.Time, startup bool) time.Time {
	t, next := s.dueTime(sc)
	if t == nil || next.IsZero() || next.After(now) {
		return next
	}

	due := t.latest(next.Add(-time.Nanosecond), now)
	trigger := TriggerCron
	if startup || !due.Equal(next) {
		trigger = TriggerMissed
	}
	next = t.next(now)
	if trigger == TriggerMissed && s.cfg.MissedPolicy == MissedSkip {
		s.log.Info("missed due times skipped", logSchedule, sc.Name, "latest", due, "next", next)
	} else {
		s.claimAndStart(ctx, sc, due, trigger, next)
	}
	s.mu.Lock()
	if j := s.jobs[sc.Name]; j != nil {
		j.next = next
	}
	s.mu.Unlock()
	return next
}

// dueTime returns sc's timing and next due time on this host, zero while
// paused. The state is made afresh when the stored schedule was created
// or changed since it was last made, counting from its last claimed due
// time.
func (s *Scheduler) dueTime(sc Schedule) (*timing, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[sc.Name]
	if j == nil {
		j = &job{running: make(map[string]context.CancelCauseFunc)}
		s.jobs[sc.Name] = j
	}
	if j.timing == nil || !j.created.Equal(sc.Created) || !j.updated.Equal(sc.Updated) {
		t, err := parseTiming(sc.Cron, sc.Timezone, sc.Created)
		if err != nil {
			// Stored specs were valid when stored; this host may lack
			// the zone's data.
			s.log.Error("schedule cannot be timed here", logSchedule, sc.Name, logErr, err)
			return nil, time.Time{}
		}
		j.timing, j.created, j.updated = t, sc.Created, sc.Updated
		j.next = t.next(maxTime(sc.Created, sc.LastDue))
	}
	if sc.Paused {
		return j.timing, time.Time{}
	}
	return j.timing, j.next
}

// claimAndStart claims due for this host and, if it gets it, starts a run
// or, with MaxConcurrent runs in progress, records a skip. Either way the
// schedule's LastDue and NextRun are stored.
func (s *Scheduler) claimAndStart(ctx context.Context, sc Schedule, due time.Time, trigger string, next time.Time) {
	ok, err := s.cfg.Store.Claim(ctx, sc.Name, due, s.cfg.Host)
	if err != nil {
		s.log.Error("claim due run", logSchedule, sc.Name, logDue, due, logErr, err)
		return
	}
	if !ok {
		s.log.Debug("due run claimed by another host", logSchedule, sc.Name, logDue, due)
		return
	}
	_, busy, err := s.start(sc, due, trigger, next)
	if errors.Is(err, ErrStopped) {
		return // the claimed due time is missed, and handled as such on the next start
	}
	if err != nil {
		s.log.Error("start run", logSchedule, sc.Name, logDue, due, logErr, err)
		return
	}
	if busy > 0 {
		s.skip(sc, due, trigger, busy, next)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
