package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser reads standard five-field specs, six-field specs whose first
// field is seconds, and descriptors (@hourly, @daily, @every 5s, ...).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// maxLatestSteps bounds the walk that finds the latest due time before a
// given instant (see latest); no real spec comes near it.
const maxLatestSteps = 1 << 20

// timing is a parsed cron spec in its time zone. Every due time it yields
// is a whole second, and the same inputs yield the same due times on every
// host, which is what lets hosts of a fleet agree on what to claim.
type timing struct {
	spec  cron.Schedule
	loc   *time.Location
	every time.Duration // for @every: the interval, counted from anchor
	// anchor is where @every intervals are counted from: the schedule's
	// creation, to the second. robfig's own @every counts from whatever
	// instant it is asked about, which differs from host to host.
	anchor time.Time
	// fixedHour is set for specs that name their hours (not "*"); only
	// those skip the repeated hour when clocks go back (see next).
	fixedHour bool
}

// parseTiming parses spec in the IANA zone tz ("" means UTC). anchor is the
// schedule's creation time.
func parseTiming(spec, tz string, anchor time.Time) (*timing, error) {
	loc, err := loadZone(tz)
	if err != nil {
		return nil, err
	}
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		return nil, fmt.Errorf("%w: cron %q: give the zone with --timezone, not in the spec", ErrInvalid, spec)
	}
	// robfig/cron takes the zone as a prefix of the spec; its default
	// would be the host's local zone, which hosts of a fleet need not share.
	parsed, err := cronParser.Parse("CRON_TZ=" + loc.String() + " " + spec)
	if err != nil {
		return nil, fmt.Errorf("%w: cron %q: %v", ErrInvalid, spec, err) // robfig's errors wrap nothing
	}
	t := &timing{spec: parsed, loc: loc, anchor: anchor.Truncate(time.Second)}
	switch s := parsed.(type) {
	case cron.ConstantDelaySchedule:
		t.every = s.Delay
	case *cron.SpecSchedule:
		const allHours = 1<<24 - 1
		t.fixedHour = s.Hour&allHours != allHours
		if s.Next(anchor).IsZero() {
			return nil, fmt.Errorf("%w: cron %q never fires", ErrInvalid, spec)
		}
	}
	return t, nil
}

// loadZone loads an IANA time zone; "" is UTC.
func loadZone(tz string) (*time.Location, error) {
	if tz == "" {
		return time.UTC, nil
	}
	// LoadLocation accepts "Local", which means whatever zone this host
	// is in: not a zone a schedule can be pinned to.
	if tz == "Local" {
		return nil, fmt.Errorf("%w: timezone %q: name an IANA zone such as Europe/Berlin", ErrInvalid, tz)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown timezone %q (want an IANA name such as Europe/Berlin or UTC)", ErrInvalid, tz)
	}
	return loc, nil
}

// next returns the first due time strictly after t, or the zero time if
// there is none within five years.
//
// Clock changes follow the wall clock of the schedule's zone. A spec with
// fixed hours ("30 2 * * *") runs once on the day clocks go back, although
// 02:30 happens twice; on the day they go forward, a time that does not
// exist that day is skipped. Specs over every hour ("*/15 * * * *",
// @hourly) fire through the repeated hour as its minutes come round.
func (t *timing) next(after time.Time) time.Time {
	if t.every > 0 {
		if after.Before(t.anchor) {
			return t.anchor.Add(t.every)
		}
		n := after.Sub(t.anchor)/t.every + 1
		return t.anchor.Add(n * t.every)
	}
	n := t.spec.Next(after)
	if t.fixedHour && !n.IsZero() && repeatedWallClock(n.In(t.loc)) {
		n = t.spec.Next(n)
	}
	return n
}

// repeatedWallClock reports whether the wall-clock reading of t already
// happened earlier, because clocks went back within the last 12 hours.
func repeatedWallClock(t time.Time) bool {
	_, off := t.Zone()
	_, earlierOff := t.Add(-12 * time.Hour).Zone()
	if earlierOff <= off {
		return false
	}
	first := t.Add(-time.Duration(earlierOff-off) * time.Second)
	return sameWallClock(first, t)
}

func sameWallClock(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd &&
		a.Hour() == b.Hour() && a.Minute() == b.Minute() && a.Second() == b.Second()
}

// latest returns the last due time in (after, until], or the zero time if
// there is none. It is how a scheduler that was away for many due times
// picks the single one it still runs.
func (t *timing) latest(after, until time.Time) time.Time {
	first := t.next(after)
	if first.IsZero() || first.After(until) {
		return time.Time{}
	}
	if t.every > 0 {
		n := until.Sub(t.anchor) / t.every
		return t.anchor.Add(n * t.every)
	}
	// Cron specs have no closed form. Look back from until over windows
	// that double until one holds a due time, then walk forward through
	// that window only: the walk is bounded by the due times in the last
	// gap or two, however long the scheduler was away.
	from := first
	span := until.Sub(after)
	for w := time.Second; w > 0 && w < span; w *= 2 {
		start := until.Add(-w)
		if n := t.next(start); !n.IsZero() && !n.After(until) {
			from = n
			break
		}
	}
	for range maxLatestSteps {
		n := t.next(from)
		if n.IsZero() || n.After(until) {
			break
		}
		from = n
	}
	return from
}
