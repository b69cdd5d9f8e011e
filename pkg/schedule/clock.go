package schedule

import "time"

// Clock is the scheduler's time source. Tests inject a fake one; the zero
// Config uses the system clock.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that fires once the clock reads at or
	// later; at once if it already does. Asking for an instant rather
	// than a duration keeps a fake clock that is advanced between the
	// two calls from losing the wake-up.
	TimerAt(at time.Time) Timer
}

// Timer is a one-shot timer from a Clock.
type Timer interface {
	// C receives one value when the timer fires.
	C() <-chan time.Time
	// Stop stops the timer if it has not fired yet.
	Stop()
}

// systemClock is the Clock of the real world.
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) TimerAt(at time.Time) Timer {
	return systemTimer{time.NewTimer(time.Until(at))}
}

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop()               { t.t.Stop() }
