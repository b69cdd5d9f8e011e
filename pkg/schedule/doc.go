// Package schedule runs commands in fresh sandboxes on a cron schedule:
// `keygate schedule create nightly --cron '0 3 * * *' --vault prod --
// ./report.sh`. Each run is what `keygate run` would do, and is recorded
// with its start, end, exit status, the end of its output and the audit
// records its sandbox produced.
//
// The package knows nothing of sandboxes or of Linux: the agent supplies a
// Runner that makes and waits for the sandbox, and a Store to keep
// schedules in (Bolt, its own bbolt file, is the embedded one; Etcd, on the
// cluster a fleet shares, the fleet's).
//
// # Due times
//
// A spec is read in its schedule's time zone (UTC by default) and follows
// its wall clock across daylight-saving changes: "0 9 * * *" in
// Europe/Berlin runs at 09:00 local time, 23 or 25 hours apart around the
// changes. @every intervals are counted from the schedule's creation, so
// every host computes the same due times.
//
// # Missed runs
//
// Due times that pass while no scheduler runs — keygated was down, or its
// loop was held up across more than one due time — are handled by the
// Config's MissedPolicy: MissedOnce (the default) runs the schedule once,
// on start, with Trigger "missed", for the latest of them; MissedSkip runs
// nothing. Either way the schedule then continues from its first due time
// after now: there is never a burst of catch-up runs. Due times that pass
// while a schedule is paused are not missed; they are simply not run.
//
// # Concurrency
//
// MaxConcurrent (default 1) bounds a schedule's runs in progress on one
// host. A due time that finds that many still running is skipped, not
// queued: it is recorded as a run with Skipped set and Error saying why,
// and consecutive skips share one record, so a run that hangs does not
// flood the history. RunNow in the same situation fails with ErrBusy.
// Runs on different hosts of a fleet are not counted together.
//
// # Failing
//
// A schedule is failing while its newest ended run could not start — its
// Error is set, e.g. `vault "prod": vault archived` after the vault was
// archived. It keeps being tried at each due time, and is no longer
// failing once a run starts again. A command that exits non-zero is not
// failing: that is its status, shown as the schedule's LastExit. A run
// killed at its Timeout has TimedOut set; one killed because the
// scheduler stopped or the schedule was removed has Interrupted set and
// leaves the failing state as it was.
//
// # Fleets
//
// Every host of a fleet runs a Scheduler over the same shared Store (Etcd,
// opened on the same prefix by every host). Before it runs a due time, a
// host claims it (Store.Claim); the store grants each (schedule, due time)
// to exactly one host, so each due run happens once, on whichever host
// claims first. A host that claims a due time and then fails before its
// run starts takes that run with it: a due time is never run twice, nor
// handed to another host. Each host rereads the store at least every
// Rescan, so a schedule created, paused or removed on one host takes
// effect on the others within that time.
package schedule
