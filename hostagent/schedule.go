//go:build linux

package hostagent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/schedule"
)

// startScheduler opens the schedule store and starts the scheduler: every
// due job runs in a fresh sandbox exactly as keygate run would.
func (a *Agent) startScheduler() error {
	st, err := a.openScheduleStore()
	if err != nil {
		return fmt.Errorf("open schedule store: %w", err)
	}
	a.schedStore = st
	a.sched, err = schedule.New(schedule.Config{
		Store:     st,
		Runner:    scheduleRunner{a},
		Host:      a.nodeName(),
		Logger:    a.log.With("subsystem", "schedule"),
		Check:     a.checkScheduleSpec,
		Audit:     a.auditScheduleEvent,
		AuditSeqs: a.auditSeqsOf,
	})
	if err != nil {
		return err
	}
	return a.sched.Start(context.Background())
}

// openScheduleStore is the schedules' store: a file in the state
// directory, or, in a fleet, the fleet's etcd cluster, where claims make
// each due run happen on one host only. Its prefix is beside the vault
// engine's, not under it: run records are rewritten at every run, and the
// vault engine watches everything under its prefix.
func (a *Agent) openScheduleStore() (schedule.Store, error) {
	if a.etcd == nil {
		return schedule.OpenBolt(filepath.Join(a.cfg.StateDir, "schedules.db"))
	}
	return schedule.OpenEtcd(a.etcd.Client(), strings.TrimSuffix(a.etcdPrefix, "/")+"-schedule/")
}

// checkScheduleSpec refuses a schedule whose sandbox could never start.
func (a *Agent) checkScheduleSpec(sp schedule.Spec) error {
	_, err := a.plan(sandboxSpecOf(sp))
	return err
}

// sandboxSpecOf is the sandbox a schedule's runs get.
func sandboxSpecOf(sp schedule.Spec) api.SandboxSpec {
	return api.SandboxSpec{Vaults: sp.Vaults, Allow: sp.Allow, Passthrough: sp.Passthrough,
		Runtime: sp.Runtime, Capture: sp.Capture, Mode: sp.Mode}
}

// auditScheduleEvent records a run that ended or a due time skipped,
// durably, once per bound vault so `keygate audit --vault V` shows it.
func (a *Agent) auditScheduleEvent(ev schedule.Event) {
	rec := audit.Record{Kind: audit.Kind(ev.Kind), Actor: "keygated", Sandbox: ev.Sandbox,
		Detail: "schedule " + ev.Schedule + ", run " + ev.Run + ": " + ev.Detail}
	if ev.Failed {
		rec.Reason = "run failed"
	}
	vaults := ev.Vaults
	if len(vaults) == 0 {
		vaults = []string{""}
	}
	for _, v := range vaults {
		rec.Vault = v
		ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
		a.metrics.AuditAppends.WithLabelValues(string(rec.Kind)).Inc()
		if err := a.audit.AppendSync(ctx, rec); err != nil {
			a.metrics.AuditErrors.Inc()
			a.log.Error("audit append failed", "kind", rec.Kind, "err", err)
		}
		cancel()
	}
}

// auditSeqsOf returns the seqs of the audit records of sandbox since t.
func (a *Agent) auditSeqsOf(sandbox string, since time.Time) ([]uint64, error) {
	recs, err := a.audit.Query(audit.Filter{Since: since})
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, r := range recs {
		if r.Sandbox == sandbox {
			out = append(out, r.Seq)
		}
	}
	return out, nil
}

// registerSchedules mounts the schedule endpoints; changes are audited as
// vault changes are, before the API answers.
func (a *Agent) registerSchedules(mux *http.ServeMux) {
	h := &schedule.HTTP{Scheduler: a.sched, Changed: func(r *http.Request, kind, name string) error {
		return a.auditChange(r, audit.Record{Kind: audit.Kind(kind), Detail: "schedule " + name})
	}}
	h.Register(mux)
}

// scheduleRunner runs scheduled jobs in fresh sandboxes.
type scheduleRunner struct{ a *Agent }

var _ schedule.Runner = scheduleRunner{}

// Run runs job like keygate run, with stdin empty and stdout and stderr
// captured to output, and removes the sandbox when the command ends or
// ctx is done.
func (r scheduleRunner) Run(ctx context.Context, job schedule.Job, output io.Writer) (schedule.Result, error) {
	a := r.a
	plan, err := a.plan(sandboxSpecOf(job.Spec))
	if err != nil {
		return schedule.Result{}, err
	}
	a.runs.Add(1)
	defer a.runs.Done()

	pr, pw, err := os.Pipe()
	if err != nil {
		return schedule.Result{}, err
	}
	defer pr.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		pw.Close()
		return schedule.Result{}, err
	}
	sb, err := a.createSandbox(plan, false)
	if err != nil {
		pw.Close()
		devnull.Close()
		return schedule.Result{}, err
	}
	sb.mu.Lock()
	sb.attached = true
	sb.mu.Unlock()
	err = a.startSandbox(sb, job.Argv, job.Env, job.Dir, []*os.File{devnull, pw, pw})
	pw.Close()
	devnull.Close()
	if err != nil {
		a.teardown(sb)
		return schedule.Result{Sandbox: sb.id}, err
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(output, pr)
		close(copied)
	}()

	select {
	case <-sb.done:
	case <-ctx.Done():
		sb.cgroup.Kill()
		<-sb.done
	case <-a.stop:
		sb.cgroup.Kill()
		<-sb.done
	}
	a.teardown(sb)
	<-copied
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return schedule.Result{ExitCode: sb.exitCode, Sandbox: sb.id}, nil
}
