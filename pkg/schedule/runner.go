package schedule

import (
	"context"
	"io"
)

// Runner runs one job in a fresh sandbox, exactly as `keygate run` would.
// The agent implements it; tests use a fake.
type Runner interface {
	// Run creates the job's sandbox, runs its command with stdin empty
	// and stdout and stderr both written to output, waits for it to
	// exit, and removes the sandbox.
	//
	// When ctx is done (the run's Timeout passed, the scheduler stopped,
	// the schedule was removed) Run kills the sandbox's processes and
	// returns soon after, with the status the command died with.
	//
	// The error is for runs whose command could not be started — an
	// archived or unknown vault, no free address, a runtime this host
	// lacks — or whose exit status could not be learned; its text is
	// recorded in Run.Error and shown to operators, so it must name the
	// cause and hold no secret. A command that ran and failed is not an
	// error: its status is Result.ExitCode. Result.Sandbox is set if a
	// sandbox was created, whatever the error.
	Run(ctx context.Context, job Job, output io.Writer) (Result, error)
}

// Job is what a Runner runs: the schedule's spec, and which run it is.
type Job struct {
	Spec
	RunID   string
	Trigger string
}

// Result is what became of a job's command. The audit records its
// sandbox produced are looked up afterwards, through Config.AuditSeqs.
type Result struct {
	ExitCode int
	Sandbox  string // the sandbox's ID, "" if none was created
}
