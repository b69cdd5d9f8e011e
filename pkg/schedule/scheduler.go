package schedule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// MissedPolicy says what a scheduler does about due times that passed
// while no scheduler was running (keygated was down, or its loop was held
// up for more than one interval).
type MissedPolicy string

const (
	// MissedOnce runs the schedule once, at start, with Trigger "missed",
	// however many due times were missed: never a burst of catch-up runs.
	MissedOnce MissedPolicy = "once"
	// MissedSkip runs nothing until the next due time.
	MissedSkip MissedPolicy = "skip"
)

// DefaultRescan is how often the scheduler rereads its store when no run
// is due sooner, so that changes made by other hosts of a fleet (a new
// schedule, a pause) take effect here without a restart.
const DefaultRescan = 10 * time.Second

// Kinds of Event.
const (
	// EventRun reports a run that ended, including one that could not
	// start.
	EventRun = "schedule.run"
	// EventSkip reports a due time skipped for MaxConcurrent.
	EventSkip = "schedule.skip"
)

// Event is something the scheduler did on its own, for the audit log.
// Changes made through the API are not events: whoever calls Create,
// Pause and so on knows the actor and records them.
type Event struct {
	Kind     string   // EventRun or EventSkip
	Schedule string   // the schedule's name
	Run      string   // the run's ID
	Sandbox  string   // the run's sandbox, "" if none was made
	Vaults   []string // the vaults the schedule binds
	// Failed is set if the run could not start or was killed for its
	// timeout.
	Failed bool
	// Detail is one line, complete in itself, that says what happened;
	// it names things and statuses only, never a secret.
	Detail string
}

// Config configures a Scheduler. Store and Runner are required.
type Config struct {
	Store  Store
	Runner Runner
	Clock  Clock        // nil means the system clock
	Logger *slog.Logger // nil discards; pass one with a subsystem attribute
	// Host names this host in claims and run records; "" means the
	// system's host name.
	Host string
	// MissedPolicy is "" (MissedOnce) or one of the MissedPolicy values.
	MissedPolicy MissedPolicy
	// History is how many runs each schedule keeps; zero means
	// DefaultHistory.
	History int
	// Rescan bounds the time between two reads of the store; zero means
	// DefaultRescan.
	Rescan time.Duration
	// Check, if not nil, vets a spec's sandbox on Create and Update as a
	// run would (vaults exist and are live, runtime available), so that a
	// schedule that could never start is refused at once. Its error is
	// returned wrapped in ErrInvalid.
	Check func(Spec) error
	// Audit, if not nil, receives an Event for every run that ends and
	// every due time skipped. It is called from the scheduler's
	// goroutines, and should return once the event's records are durable
	// (audit.Log.AppendSync): AuditSeqs relies on that.
	Audit func(Event)
	// AuditSeqs, if not nil, returns the sequence numbers of the audit
	// records of sandbox made at or after since, oldest first. It is
	// called when a run that made a sandbox has ended and its Event has
	// been recorded, so that every record of the sandbox — its creation,
	// its injections and denials, its removal, the run's own — is
	// readable; the run keeps the first MaxAuditSeqs.
	AuditSeqs func(sandbox string, since time.Time) ([]uint64, error)
}

func (c *Config) validate() error {
	if c.Store == nil || c.Runner == nil {
		return errors.New("schedule: Config needs a Store and a Runner")
	}
	switch c.MissedPolicy {
	case "":
		c.MissedPolicy = MissedOnce
	case MissedOnce, MissedSkip:
	default:
		return fmt.Errorf("schedule: missed policy %q: want once or skip", c.MissedPolicy)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("schedule: host name: %w", err)
		}
		c.Host = h
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.Rescan <= 0 {
		c.Rescan = DefaultRescan
	}
	return nil
}

// Log keys.
const (
	logSchedule = "schedule"
	logRun      = "run"
	logTrigger  = "trigger"
	logDue      = "due"
	logErr      = "err"
)

// Causes of a run's cancellation, told apart in the run's record.
var (
	errTimeout = errors.New("run timed out")
	errRemoved = errors.New("schedule removed")
)

// Scheduler runs the schedules of a Store when they are due. Create it
// with New, then Start it; Stop ends its loop and its runs. Its methods
// are safe for concurrent use.
type Scheduler struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	wake  chan struct{} // capacity 1: the store changed, look again now

	runCtx   context.Context         // parent of every run's context
	stopRuns context.CancelCauseFunc // cancels runCtx with ErrStopped
	runs     sync.WaitGroup          // runs in progress

	mu         sync.Mutex
	jobs       map[string]*job    // by schedule name; guarded by mu
	started    bool               // guarded by mu
	stopped    bool               // guarded by mu
	cancelLoop context.CancelFunc // guarded by mu; nil until Start
	loopDone   chan struct{}      // closed when the loop returns

	// finished, if set before Start, is called once an ended run's
	// records are all stored; tests wait on it.
	finished func(Run)
}

// job is the scheduler's view of one schedule: when it is next due on
// this host, and its runs in progress here. Fields are guarded by the
// Scheduler's mu.
type job struct {
	created, updated time.Time // of the stored schedule timing was made from
	timing           *timing
	next             time.Time                          // next due time; zero while paused or never
	running          map[string]context.CancelCauseFunc // run ID → cancel
}

// New returns a scheduler; it runs nothing until Start.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	runCtx, stopRuns := context.WithCancelCause(context.Background())
	return &Scheduler{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		wake:     make(chan struct{}, 1),
		runCtx:   runCtx,
		stopRuns: stopRuns,
		jobs:     make(map[string]*job),
		loopDone: make(chan struct{}),
	}, nil
}

// Start closes the records of this host's runs that a crash left open,
// then starts the loop that runs due schedules. Its first pass applies the
// MissedPolicy to due times that passed while no scheduler ran. ctx bounds
// the startup work only; the loop runs until Stop.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.stopped {
		s.mu.Unlock()
		return errors.New("schedule: Start called twice, or after Stop")
	}
	s.started = true
	s.mu.Unlock()

	if err := s.closeAbandoned(ctx); err != nil {
		return fmt.Errorf("close abandoned runs: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.cancelLoop = cancel
	s.mu.Unlock()
	go s.loop(loopCtx)
	return nil
}

// closeAbandoned marks the runs this host left unfinished, because it
// died without Stop, as interrupted. Their output is lost with the
// process that gathered it.
func (s *Scheduler) closeAbandoned(ctx context.Context) error {
	scheds, err := s.cfg.Store.Schedules()
	if err != nil {
		return err
	}
	now := s.now()
	for _, sc := range scheds {
		if err := ctx.Err(); err != nil {
			return err
		}
		runs, err := s.cfg.Store.Runs(sc.Name, 0)
		if err != nil {
			return err
		}
		for _, r := range runs {
			if !r.Running() || r.Host != s.cfg.Host {
				continue
			}
			r.Ended, r.Interrupted, r.ExitCode = now, true, -1
			if err := s.cfg.Store.PutRun(r, s.cfg.History); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			s.log.Warn("run was left unfinished by a previous keygated", logSchedule, sc.Name, logRun, r.ID)
		}
	}
	return nil
}

// Stop ends the loop, kills the runs in progress (recorded as
// interrupted) and waits for their records until ctx is done. Later calls
// of RunNow fail with ErrStopped.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	cancel := s.cancelLoop
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-s.loopDone
	}
	s.stopRuns(ErrStopped)

	done := make(chan struct{})
	go func() {
		s.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop scheduler: runs still ending: %w", ctx.Err())
	}
}

// now reads the clock in UTC without a monotonic reading, so a time
// returned to a caller equals the one read back from the store.
func (s *Scheduler) now() time.Time { return s.clock.Now().UTC().Round(0) }

// poke makes the loop look at the store again now.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
