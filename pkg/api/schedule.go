package api

import "github.com/keygate/keygate/pkg/schedule"

// Scheduled runs. keygated runs each schedule's command in a fresh sandbox
// at its due times, exactly as POST /v1/run would, and keeps a bounded
// history of the runs. The endpoints, all JSON; errors are an Error body
// with the status given:
//
//	POST   /v1/schedules                  ScheduleSpec → 201 Schedule
//	                                      400 invalid spec (name, cron, timezone, command,
//	                                          timeout, max-concurrent, or a vault that does
//	                                          not exist or is archived); 409 name taken
//	GET    /v1/schedules                  → 200 []Schedule, sorted by name
//	GET    /v1/schedules/{name}           → 200 Schedule; 404
//	POST   /v1/schedules/{name}/pause     → 200 Schedule; 404 (pausing a paused one is a no-op)
//	POST   /v1/schedules/{name}/resume    → 200 Schedule; 404 (resuming an active one is a no-op)
//	POST   /v1/schedules/{name}/run-now   → 202 ScheduleRun, as started; 404;
//	                                      409 max-concurrent runs already in progress
//	DELETE /v1/schedules/{name}           → 204; 404. Kills the schedule's runs in progress
//	                                      and drops its history.
//	GET    /v1/schedules/{name}/runs?limit=N
//	                                      → 200 []ScheduleRun, newest first, at most N
//	                                      (0 or absent: the whole history); 404
//
// schedule.HTTP implements them over a schedule.Scheduler; 503 means the
// agent is stopping.
type (
	// ScheduleSpec is the body of POST /v1/schedules: the schedule's
	// name, cron spec and time zone, the sandbox (as in SandboxSpec) and
	// the command (as in RunRequest), its timeout and max-concurrent.
	ScheduleSpec = schedule.Spec
	// Schedule is a stored schedule: its spec, whether it is paused or
	// failing, its next due time and the outcome of its newest run.
	Schedule = schedule.Schedule
	// ScheduleRun is one run of a schedule: trigger, start and end,
	// exit status or the reason it could not start, whether it timed
	// out, its sandbox, its audit record numbers and the end of its
	// output.
	ScheduleRun = schedule.Run
)
