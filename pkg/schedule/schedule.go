package schedule

import (
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/pkg/vault"
)

// Sentinel errors. Every error the package returns for one of these
// conditions wraps the matching sentinel, so callers test with errors.Is.
var (
	// ErrNotFound means no schedule has the name.
	ErrNotFound = errors.New("not found")
	// ErrExists means a schedule already has the name.
	ErrExists = errors.New("already exists")
	// ErrInvalid means a spec failed validation, including the Check hook
	// of the scheduler's Config.
	ErrInvalid = errors.New("invalid schedule")
	// ErrBusy means RunNow found MaxConcurrent runs of the schedule in
	// progress on this host.
	ErrBusy = errors.New("max-concurrent runs already in progress")
	// ErrStopped is returned by the Scheduler's methods after Stop.
	ErrStopped = errors.New("scheduler stopped")
)

// Limits on a spec.
const (
	// DefaultMaxConcurrent is MaxConcurrent when a spec leaves it zero.
	DefaultMaxConcurrent = 1
	// MaxMaxConcurrent is the largest MaxConcurrent a spec may ask for.
	MaxMaxConcurrent = 16
	// DefaultTimezone is the zone of a spec that names none.
	DefaultTimezone = "UTC"
)

// Triggers say why a run happened (Run.Trigger).
const (
	// TriggerCron is a run at one of the spec's due times.
	TriggerCron = "cron"
	// TriggerRunNow is a run asked for with RunNow.
	TriggerRunNow = "run-now"
	// TriggerMissed is the one run made for due times that passed while
	// no scheduler was running (MissedOnce).
	TriggerMissed = "missed"
)

// Spec is what an operator asks for: when to run, and the sandbox and
// command to run then, as `keygate run` would. It is the body of
// POST /v1/schedules.
type Spec struct {
	Name string `json:"name"` // vault name rules (vault.ValidateName)
	// Cron is a five-field spec ("*/5 * * * *"), a six-field one whose
	// first field is seconds ("*/10 * * * * *"), or a descriptor
	// (@hourly, @daily, @every 30s).
	Cron string `json:"cron"`
	// Timezone is the IANA zone the spec's fields are read in; "" is UTC.
	// It does not matter to @every.
	Timezone string `json:"timezone,omitempty"`

	// The sandbox, as in api.SandboxSpec; "" takes the same defaults.
	Vaults []string `json:"vaults,omitempty"`
	Allow  []string `json:"allow,omitempty"`
	// Passthrough as in api.SandboxSpec.
	Passthrough []string `json:"passthrough,omitempty"`
	Runtime     string   `json:"runtime,omitempty"`
	Capture     string   `json:"capture,omitempty"`
	Mode        string   `json:"mode,omitempty"`

	// The command, as in api.RunRequest: Env holds only the caller's
	// allowlisted variables (never a secret) and Dir is its working
	// directory ("" means the sandbox's home).
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`

	// Timeout ends a run that takes longer; zero means no limit.
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// MaxConcurrent is how many runs of the schedule may be in progress
	// on one host at once, 1 to MaxMaxConcurrent; zero means 1.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
}

// Schedule is a stored schedule: its spec and what has become of it.
type Schedule struct {
	Spec
	Paused  bool      `json:"paused"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"` // last change of spec or pause state

	// NextRun is the next due time; zero while paused.
	NextRun time.Time `json:"next_run,omitzero"`
	// LastDue is the latest due time that was claimed (run or skipped)
	// or, after Resume, the time of resuming. Due times up to it are
	// never run again, whichever host starts.
	LastDue time.Time `json:"last_due,omitzero"`

	// The newest run, by start time; zero values before the first.
	LastRun      time.Time `json:"last_run,omitzero"`
	LastRunID    string    `json:"last_run_id,omitempty"`
	LastExit     int       `json:"last_exit"`                // -1 while it runs, or if it could not start
	LastTimedOut bool      `json:"last_timed_out,omitempty"` // that run was killed by Timeout
	// Failing is set while the newest ended run could not start (its
	// Error is LastError), e.g. because a vault was archived. A non-zero
	// exit is not failing: it is the command's answer, in LastExit.
	Failing   bool   `json:"failing"`
	LastError string `json:"last_error,omitempty"`
}

// State is "paused", "failing" or "active", the STATE column of
// `keygate schedule list`.
func (s *Schedule) State() string {
	switch {
	case s.Paused:
		return "paused"
	case s.Failing:
		return "failing"
	}
	return "active"
}

// Run is one run of a schedule, kept in its bounded history. A run is
// stored when it starts (Ended zero) and again when it ends.
type Run struct {
	Schedule string    `json:"schedule"`
	ID       string    `json:"id"` // random, 8 hex digits
	Trigger  string    `json:"trigger"`
	Due      time.Time `json:"due"`            // the due time it ran for; for run-now, when asked
	Host     string    `json:"host,omitempty"` // the host that ran it
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"` // zero while running

	// ExitCode is the command's exit status, valid when Error is "" and
	// Skipped is 0. A command killed by a signal has 128+signal.
	ExitCode int `json:"exit_code"`
	// Error says why the run could not start or finish, e.g.
	// `vault "v": vault archived`; "" if the command ran.
	Error string `json:"error,omitempty"`
	// TimedOut is set if the run was killed because it exceeded the
	// schedule's Timeout.
	TimedOut bool `json:"timed_out,omitempty"`
	// Interrupted is set if the run was killed because the scheduler
	// stopped or the schedule was removed, or was found unfinished after
	// a crash. It does not make the schedule failing.
	Interrupted bool `json:"interrupted,omitempty"`
	// Skipped counts due times that were not run because MaxConcurrent
	// runs were still in progress; a record with Skipped > 0 stands for
	// that many consecutive skips and ran nothing. Error says why.
	Skipped int `json:"skipped,omitempty"`

	Sandbox string `json:"sandbox,omitempty"` // the sandbox it ran in
	// AuditSeqs lists the sequence numbers of the audit records the run
	// produced (its sandbox's injections, denials, creation, removal), at
	// most MaxAuditSeqs of them; AuditCount is how many there were.
	AuditSeqs  []uint64 `json:"audit_seqs,omitempty"`
	AuditCount int      `json:"audit_count,omitempty"`
	// Output is the end of the command's stdout and stderr, interleaved
	// as written: at most MaxOutput bytes.
	Output []byte `json:"output,omitempty"`
}

// Running reports whether the run has not ended.
func (r *Run) Running() bool { return r.Ended.IsZero() }

// Limits on what a run record keeps.
const (
	MaxOutput    = 64 << 10
	MaxAuditSeqs = 1024
)

// normalize validates a spec and fills in its defaults.
func (sp *Spec) normalize() error {
	if err := vault.ValidateName(sp.Name); err != nil {
		return fmt.Errorf("%w: name %w", ErrInvalid, err)
	}
	if sp.Timezone == "" {
		sp.Timezone = DefaultTimezone
	}
	if _, err := parseTiming(sp.Cron, sp.Timezone, time.Now()); err != nil {
		return err
	}
	if len(sp.Argv) == 0 || sp.Argv[0] == "" {
		return fmt.Errorf("%w: no command given", ErrInvalid)
	}
	if sp.Timeout < 0 {
		return fmt.Errorf("%w: timeout %v is negative", ErrInvalid, sp.Timeout)
	}
	if sp.MaxConcurrent == 0 {
		sp.MaxConcurrent = DefaultMaxConcurrent
	}
	if sp.MaxConcurrent < 1 || sp.MaxConcurrent > MaxMaxConcurrent {
		return fmt.Errorf("%w: max-concurrent %d: want 1 to %d", ErrInvalid, sp.MaxConcurrent, MaxMaxConcurrent)
	}
	choices := []struct {
		what, v string
		want    [2]string
	}{
		{"runtime", sp.Runtime, [2]string{"native", "runsc"}},
		{"capture", sp.Capture, [2]string{"cgroup", "tc"}},
		{"mode", sp.Mode, [2]string{"allowlist", "open"}},
	}
	for _, c := range choices {
		if c.v != "" && c.v != c.want[0] && c.v != c.want[1] {
			return fmt.Errorf("%w: %s %q: want %s or %s", ErrInvalid, c.what, c.v, c.want[0], c.want[1])
		}
	}
	return nil
}
