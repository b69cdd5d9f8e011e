//go:build linux

package hostagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/jail"
	"github.com/keygate/keygate/pkg/vault"
)

// errNoSandbox is returned for a sandbox ID that is not live.
var errNoSandbox = fmt.Errorf("sandbox %w", vault.ErrNotFound)

func (a *Agent) handleListSandboxes(w http.ResponseWriter, r *http.Request) {
	out := []api.Sandbox{}
	for _, s := range a.sandboxes.list() {
		out = append(out, s.info())
	}
	respond(w, http.StatusOK, out, nil)
}

// handleCreateSandbox makes a persistent sandbox: its init holds the
// namespaces until `sandbox rm`, and commands run in it with exec.
func (a *Agent) handleCreateSandbox(w http.ResponseWriter, r *http.Request) {
	var spec api.SandboxSpec
	if !decode(w, r, &spec) {
		return
	}
	plan, err := a.plan(spec)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	start := time.Now()
	sb, err := a.createSandbox(plan, true)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	if err := a.startSandbox(sb, nil, nil, "", a.devNull()); err != nil {
		a.teardown(sb)
		writeStoreError(w, err)
		return
	}
	a.log.Info("persistent sandbox started", "sandbox", sb.id, "duration", time.Since(start))
	respond(w, http.StatusCreated, sb.info(), nil)
}

// devNull returns three handles on /dev/null: the stdio of a persistent
// sandbox's init.
func (a *Agent) devNull() []*os.File {
	f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return []*os.File{os.Stdin, os.Stdout, os.Stderr} // unreachable on Linux
	}
	return []*os.File{f, f, f}
}

// handleRemoveSandbox ends a sandbox and everything in it.
func (a *Agent) handleRemoveSandbox(w http.ResponseWriter, r *http.Request) {
	sb, ok := a.sandboxes.byIDOf(r.PathValue("id"))
	if !ok {
		writeStoreError(w, fmt.Errorf("%q: %w", r.PathValue("id"), errNoSandbox))
		return
	}
	sb.cgroup.Kill()
	select {
	case <-sb.done:
	case <-time.After(10 * time.Second):
	}
	a.teardown(sb)
	w.WriteHeader(http.StatusNoContent)
}

// handleWait answers when a sandbox has exited, with its exit status. A
// `keygate run` whose stream broke (the agent restarted) reattaches here;
// attaching also stops an adopted run sandbox from being ended as orphaned.
func (a *Agent) handleWait(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sb, ok := a.sandboxes.byIDOf(id)
	if !ok {
		if code, ok := a.exitCodeOf(id); ok {
			respond(w, http.StatusOK, api.WaitResponse{Sandbox: id, ExitCode: code}, nil)
			return
		}
		writeStoreError(w, fmt.Errorf("%q: %w", id, errNoSandbox))
		return
	}
	sb.mu.Lock()
	sb.attached = true
	sb.mu.Unlock()
	select {
	case <-sb.done:
	case <-r.Context().Done():
		return
	case <-a.stop:
		writeError(w, http.StatusServiceUnavailable, errors.New("agent stopping"))
		return
	}
	sb.mu.Lock()
	code := sb.exitCode
	sb.mu.Unlock()
	respond(w, http.StatusOK, api.WaitResponse{Sandbox: id, ExitCode: code}, nil)
}

// handleExec runs a command in a persistent sandbox, with the run
// protocol: the caller's stdio is passed over the upgraded connection and
// the exit status streamed back. The command ends if the caller goes away;
// the sandbox stays.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	var req api.ExecRequest
	if !decode(w, r, &req) {
		return
	}
	sb, ok := a.sandboxes.byIDOf(r.PathValue("id"))
	if !ok {
		writeStoreError(w, fmt.Errorf("%q: %w", r.PathValue("id"), errNoSandbox))
		return
	}
	if len(req.Argv) == 0 {
		writeStoreError(w, fmt.Errorf("%w: no command given", vault.ErrInvalid))
		return
	}
	if !sb.persistent {
		writeStoreError(w, fmt.Errorf("sandbox %s: %w: exec needs a sandbox made by sandbox create", sb.id, vault.ErrInvalid))
		return
	}
	a.serveStream(w, "exec", func(stdio []*os.File, conn *net.UnixConn, _ *json.Encoder) (int, error) {
		return a.exec(sb, req, stdio, conn)
	})
}

// exec starts req's command in sb and waits for it, the caller's
// disconnect, the sandbox's end or the agent's shutdown.
func (a *Agent) exec(sb *sandbox, req api.ExecRequest, stdio []*os.File, conn interface{ Read([]byte) (int, error) }) (int, error) {
	cmd, err := a.startExec(sb, req, stdio)
	if err != nil {
		return 0, err
	}
	closeAll(stdio)

	exited := make(chan int, 1)
	go func() {
		cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if code < 0 {
			code = 137
		}
		exited <- code
	}()
	gone := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		conn.Read(buf)
		close(gone)
	}()
	select {
	case code := <-exited:
		return code, nil
	case <-gone:
	case <-sb.done:
	case <-a.stop:
	}
	// nsenter forwards the signal to the command it forked.
	cmd.Process.Kill()
	return <-exited, nil
}

// startExec starts req's command in sb with the sandbox's runtime.
func (a *Agent) startExec(sb *sandbox, req api.ExecRequest, stdio []*os.File) (*exec.Cmd, error) {
	if sb.runtime == runtimeRunsc {
		return a.execRunsc(sb, req.Argv, req.Env, req.Dir, stdio)
	}
	cgfd, err := sb.cgroup.Open()
	if err != nil {
		return nil, err
	}
	defer cgfd.Close()
	env, _ := a.sandboxEnv(sb, req.Env)
	return jail.Exec(&jail.ExecSpec{
		Argv: req.Argv, Env: env, Dir: req.Dir, Home: sandboxHome,
		UID: a.cfg.SandboxUID, GID: a.cfg.SandboxUID,
	}, jail.ExecOptions{InitPID: sb.pid(), Cgroup: cgfd, Stdio: stdio})
}
