package schedule

import (
	"context"
	"fmt"
	"time"
)

// Create validates spec, fills in its defaults and stores it as a new,
// active schedule. Its first due time is the first after now.
func (s *Scheduler) Create(ctx context.Context, spec Spec) (Schedule, error) {
	if err := s.vet(&spec); err != nil {
		return Schedule{}, err
	}
	now := s.now()
	t, err := parseTiming(spec.Cron, spec.Timezone, now)
	if err != nil {
		return Schedule{}, err
	}
	sc := Schedule{Spec: spec, Created: now, Updated: now, NextRun: t.next(now)}
	if err := s.cfg.Store.CreateSchedule(sc); err != nil {
		return Schedule{}, err
	}
	s.log.Info("schedule created", logSchedule, sc.Name, "cron", sc.Cron, "timezone", sc.Timezone,
		"next", sc.NextRun)
	s.poke()
	return sc, nil
}

// Update replaces the spec of an existing schedule, keeping its history
// and pause state. Due times of the old spec that have passed are not run:
// the new spec counts from now.
func (s *Scheduler) Update(ctx context.Context, spec Spec) (Schedule, error) {
	if err := s.vet(&spec); err != nil {
		return Schedule{}, err
	}
	now := s.now()
	sc, err := s.cfg.Store.UpdateSchedule(spec.Name, func(sc *Schedule) error {
		t, err := parseTiming(spec.Cron, spec.Timezone, sc.Created)
		if err != nil {
			return err
		}
		sc.Spec, sc.Updated, sc.LastDue = spec, now, now
		sc.NextRun = time.Time{}
		if !sc.Paused {
			sc.NextRun = t.next(now)
		}
		return nil
	})
	if err != nil {
		return Schedule{}, err
	}
	s.log.Info("schedule updated", logSchedule, sc.Name, "cron", sc.Cron, "timezone", sc.Timezone)
	s.poke()
	return sc, nil
}

// vet normalizes spec and runs the Check hook.
func (s *Scheduler) vet(spec *Spec) error {
	if err := spec.normalize(); err != nil {
		return err
	}
	if s.cfg.Check != nil {
		if err := s.cfg.Check(*spec); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}

// Pause stops the schedule from running at its due times; runs in
// progress go on. Due times while paused are never run, not even as
// missed. Pausing a paused schedule changes nothing.
func (s *Scheduler) Pause(ctx context.Context, name string) (Schedule, error) {
	now := s.now()
	sc, err := s.cfg.Store.UpdateSchedule(name, func(sc *Schedule) error {
		if !sc.Paused {
			sc.Paused, sc.Updated, sc.NextRun = true, now, time.Time{}
		}
		return nil
	})
	if err != nil {
		return Schedule{}, err
	}
	s.log.Info("schedule paused", logSchedule, name)
	s.poke()
	return sc, nil
}

// Resume lets a paused schedule run again from its first due time after
// now. Resuming an active schedule changes nothing.
func (s *Scheduler) Resume(ctx context.Context, name string) (Schedule, error) {
	now := s.now()
	sc, err := s.cfg.Store.UpdateSchedule(name, func(sc *Schedule) error {
		if !sc.Paused {
			return nil
		}
		t, err := parseTiming(sc.Cron, sc.Timezone, sc.Created)
		if err != nil {
			return err
		}
		sc.Paused, sc.Updated, sc.LastDue, sc.NextRun = false, now, now, t.next(now)
		return nil
	})
	if err != nil {
		return Schedule{}, err
	}
	s.log.Info("schedule resumed", logSchedule, name, "next", sc.NextRun)
	s.poke()
	return sc, nil
}

// Remove deletes a schedule and its history, and kills its runs in
// progress on this host (a fleet's other hosts kill theirs when they next
// read the store).
func (s *Scheduler) Remove(ctx context.Context, name string) error {
	if err := s.cfg.Store.DeleteSchedule(name); err != nil {
		return err
	}
	s.mu.Lock()
	if j := s.jobs[name]; j != nil {
		for _, cancel := range j.running {
			cancel(errRemoved)
		}
		delete(s.jobs, name)
	}
	s.mu.Unlock()
	s.log.Info("schedule removed", logSchedule, name)
	s.poke()
	return nil
}

// RunNow starts a run of the schedule at once, paused or not, and returns
// its record as started. ErrBusy if MaxConcurrent of its runs are in
// progress on this host.
func (s *Scheduler) RunNow(ctx context.Context, name string) (Run, error) {
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return Run{}, ErrStopped
	}
	sc, err := s.cfg.Store.Schedule(name)
	if err != nil {
		return Run{}, err
	}
	now := s.now()
	r, busy, err := s.start(sc, now, TriggerRunNow, time.Time{})
	if err != nil {
		return Run{}, err
	}
	if busy > 0 {
		return Run{}, fmt.Errorf("schedule %q: %w (%d of %d)", name, ErrBusy, busy, sc.MaxConcurrent)
	}
	return r, nil
}

// List returns every schedule, sorted by name.
func (s *Scheduler) List(ctx context.Context) ([]Schedule, error) {
	scheds, err := s.cfg.Store.Schedules()
	if err != nil {
		return nil, err
	}
	for i := range scheds {
		s.overlay(&scheds[i])
	}
	return scheds, nil
}

// Show returns one schedule.
func (s *Scheduler) Show(ctx context.Context, name string) (Schedule, error) {
	sc, err := s.cfg.Store.Schedule(name)
	if err != nil {
		return Schedule{}, err
	}
	s.overlay(&sc)
	return sc, nil
}

// Runs returns a schedule's history, newest first; limit > 0 returns at
// most that many runs.
func (s *Scheduler) Runs(ctx context.Context, name string, limit int) ([]Run, error) {
	return s.cfg.Store.Runs(name, limit)
}

// overlay replaces the stored next due time with this host's, which is
// fresher: the store's is written only when a due time is claimed.
func (s *Scheduler) overlay(sc *Schedule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[sc.Name]
	if sc.Paused || j == nil || !j.created.Equal(sc.Created) || !j.updated.Equal(sc.Updated) {
		return
	}
	sc.NextRun = j.next
}
