package schedule

import (
	"context"
	"time"
)

// DefaultHistory is how many runs a schedule's history keeps when the
// scheduler's Config does not say.
const DefaultHistory = 50

// Store keeps schedules and their run history. The embedded engine (Bolt,
// its own file in the state directory) serves one host; the fleet engine
// (Etcd) implements the same interface over the fleet's etcd cluster, and
// every host's scheduler then reads the same schedules.
//
// Every method is safe for concurrent use. Errors wrap ErrNotFound and
// ErrExists where those apply.
type Store interface {
	// CreateSchedule stores a new schedule; ErrExists if the name is taken.
	CreateSchedule(s Schedule) error
	// UpdateSchedule applies fn to the stored schedule and stores the
	// result, atomically with respect to every other change of it: an
	// engine without transactions retries fn on a conflicting write, so
	// fn must have no effect but on its argument. If fn fails, nothing is
	// stored and its error is returned. It returns what was stored.
	UpdateSchedule(name string, fn func(*Schedule) error) (Schedule, error)
	// DeleteSchedule removes a schedule with its runs and claims.
	DeleteSchedule(name string) error
	// Schedule returns one schedule.
	Schedule(name string) (Schedule, error)
	// Schedules lists every schedule, sorted by name.
	Schedules() ([]Schedule, error)

	// PutRun stores r, replacing the run of the same schedule, ID and
	// start time if there is one. A new run beyond keep runs of its
	// schedule drops the oldest. ErrNotFound if the schedule is gone.
	PutRun(r Run, keep int) error
	// Runs returns a schedule's runs, newest first; limit > 0 returns at
	// most that many.
	Runs(name string, limit int) ([]Run, error)

	// Claim reserves the due time due of schedule name for host, and
	// reports whether this call got it: of all the hosts that claim the
	// same (name, due), exactly one gets true, and only that one runs
	// it. A host may claim the same pair again and gets true again.
	//
	// The embedded engine serves one host, so a claim only fails there
	// if another scheduler on the same store (as in tests) took it. A
	// distributed engine must decide in one transaction, creating
	// <prefix>claims/<name>/<due unix seconds> = host if and only if the
	// key is absent, and attach the key to a lease of a day or more so
	// that claims expire without a sweeper. A claim whose outcome was
	// lost (the cluster failed before replying) can be made again: the
	// host finds its own claim.
	Claim(ctx context.Context, name string, due time.Time, host string) (bool, error)

	// Close releases the store.
	Close() error
}
