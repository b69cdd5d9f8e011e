package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/pkg/api"
)

// passEnv are the caller's variables a sandbox inherits; nothing else of
// the caller's environment (which may hold real keys) goes in.
var passEnv = []string{"TERM", "LANG", "LANGUAGE", "TZ", "COLORTERM", "NO_COLOR"}

// reattachTimeout is how long keygate run keeps trying to reach a
// restarted agent to learn how its sandbox ended.
const reattachTimeout = 2 * time.Minute

// sandboxFlags are the flags shared by run and sandbox create.
type sandboxFlags struct {
	vaults, allow, passthrough     stringList
	runtime, capture, mode, rootfs *string
}

func addSandboxFlags(fs *flag.FlagSet) *sandboxFlags {
	f := &sandboxFlags{}
	fs.Var(&f.vaults, "vault", "bind this vault's credentials to the sandbox (repeatable)")
	fs.Var(&f.allow, "allow", "also allow this domain, without credentials (repeatable; *.suffix and **.suffix work)")
	fs.Var(&f.passthrough, "passthrough", "also allow this domain and relay its TLS untouched, for clients that pin "+
		"certificates; no credential is attached there and placeholders sent there go unseen (repeatable)")
	f.runtime = fs.String("runtime", "native", "sandbox runtime: native or runsc (gVisor)")
	f.capture = fs.String("capture", "", "egress capture: cgroup or tc (default: cgroup for native, tc for runsc)")
	f.mode = fs.String("mode", "allowlist", "allowlist: only credential and --allow domains; open: any public host (credentials still only on their domains)")
	f.rootfs = fs.String("rootfs", "", "runsc: the root directory the sandbox sees, read-only (default: the host's)")
	return f
}

func (f *sandboxFlags) spec() api.SandboxSpec {
	return api.SandboxSpec{Vaults: f.vaults, Allow: f.allow, Passthrough: f.passthrough, Runtime: *f.runtime,
		Capture: *f.capture, Mode: *f.mode, Rootfs: *f.rootfs}
}

func runRun(e *env, args []string) (int, error) {
	fs := newFlagSet("run", "run [--vault V]... [--allow DOMAIN]... [--mode allowlist|open] [--runtime native|runsc] [--capture cgroup|tc] -- CMD [ARG]...", e.stdout)
	sf := addSandboxFlags(fs)
	pos, tail, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	argv := append(pos, tail...)
	if len(argv) == 0 {
		return ExitUsage, usageError("run: no command given (keygate run [flags] -- CMD [ARG]...)")
	}
	dir, _ := os.Getwd()
	req := api.RunRequest{SandboxSpec: sf.spec(), Argv: argv, Env: passedEnv(), Dir: dir}

	// Signals end the run by closing the stream; the agent then kills
	// the sandbox. They are caught before the sandbox starts so that an
	// early Ctrl-C cannot leave one behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	stream, err := e.client.Run(req, [3]*os.File{e.stdin, os.Stdout, os.Stderr})
	if err != nil {
		return ExitSandbox, err
	}
	return follow(e, stream, sigs, true)
}

// follow reads a run or exec stream until the exit event. If the stream
// breaks after the sandbox started (the agent crashed or restarted) and
// reattach is set, it waits for the agent to come back and asks it how the
// sandbox ended: the sandbox keeps running meanwhile, its stdio still
// connected here. A signal ends the sandbox, now or once the agent is back.
func follow(e *env, stream *api.RunStream, sigs <-chan os.Signal, reattach bool) (int, error) {
	interrupted := make(chan struct{})
	go func() {
		<-sigs
		close(interrupted)
		stream.Close()
	}()
	id := ""
	for {
		ev, err := stream.Next()
		if err != nil {
			stream.Close()
			select {
			case <-interrupted:
				if id != "" && reattach {
					removeWhenBack(e, id)
				}
				return 130, nil
			default:
			}
			if id == "" || !reattach {
				return ExitSandbox, fmt.Errorf("run: %w", err)
			}
			return reattachRun(e, id, interrupted)
		}
		switch ev.Event {
		case "started":
			id = ev.Sandbox
		case "exit":
			stream.Close()
			return ev.ExitCode, nil
		case "error":
			stream.Close()
			return ExitSandbox, fmt.Errorf("run: %s", ev.Error)
		}
	}
}

// reattachRun waits for the agent to answer again and for sandbox id to
// end, and returns its exit status.
func reattachRun(e *env, id string, interrupted <-chan struct{}) (int, error) {
	fmt.Fprintf(e.stderr, "keygate: lost keygated; sandbox %s keeps running, waiting for the agent to return\n", id)
	deadline := time.Now().Add(reattachTimeout)
	for {
		var res api.WaitResponse
		ctx, cancel := context.WithCancel(e.ctx)
		go func() {
			select {
			case <-interrupted:
			case <-ctx.Done():
			}
			cancel()
		}()
		err := e.client.Do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(id)+"/wait", nil, &res)
		cancel()
		select {
		case <-interrupted:
			removeWhenBack(e, id)
			return 130, nil
		default:
		}
		if err == nil {
			return res.ExitCode, nil
		}
		if !errors.Is(err, api.ErrUnreachable) {
			return ExitSandbox, fmt.Errorf("run: reattach to sandbox %s: %w", id, err)
		}
		if time.Now().After(deadline) {
			return ExitSandbox, fmt.Errorf("run: keygated did not return within %v; sandbox %s is ended when it does", reattachTimeout, id)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// removeWhenBack ends sandbox id, retrying while the agent is unreachable.
func removeWhenBack(e *env, id string) {
	deadline := time.Now().Add(reattachTimeout)
	for time.Now().Before(deadline) {
		err := e.client.Do(e.ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id), nil, nil)
		if err == nil || !errors.Is(err, api.ErrUnreachable) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func passedEnv() []string {
	var out []string
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			out = append(out, k+"="+v)
		}
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LC_") {
			out = append(out, kv)
		}
	}
	return out
}

func runSandbox(e *env, args []string) (int, error) {
	if len(args) == 0 {
		return ExitUsage, usageError("sandbox: want create, list, exec or rm")
	}
	switch args[0] {
	case "create":
		return sandboxCreate(e, args[1:])
	case "list":
		return sandboxList(e, args[1:])
	case "exec":
		return sandboxExec(e, args[1:])
	case "rm":
		return sandboxRemove(e, args[1:])
	}
	return ExitUsage, usageError("sandbox: unknown subcommand %q", args[0])
}

func sandboxCreate(e *env, args []string) (int, error) {
	fs := newFlagSet("sandbox create", "sandbox create [--vault V]... [--allow DOMAIN]... [--mode allowlist|open] [--runtime native] [--json]", e.stdout)
	sf := addSandboxFlags(fs)
	asJSON := fs.Bool("json", false, "print the sandbox as JSON")
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) != 0 {
		return ExitUsage, usageError("sandbox create: unexpected argument %q", pos[0])
	}
	var sb api.Sandbox
	if err := e.client.Do(e.ctx, http.MethodPost, "/v1/sandboxes", sf.spec(), &sb); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, sb)
	}
	fmt.Fprintln(e.stdout, sb.ID)
	return ExitOK, nil
}

func sandboxExec(e *env, args []string) (int, error) {
	fs := newFlagSet("sandbox exec", "sandbox exec ID -- CMD [ARG]...", e.stdout)
	pos, tail, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) == 0 {
		return ExitUsage, usageError("sandbox exec: want ID -- CMD [ARG]...")
	}
	argv := append(pos[1:], tail...)
	if len(argv) == 0 {
		return ExitUsage, usageError("sandbox exec: no command given")
	}
	dir, _ := os.Getwd()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	req := api.ExecRequest{Argv: argv, Env: passedEnv(), Dir: dir}
	stream, err := e.client.Exec(pos[0], req, [3]*os.File{e.stdin, os.Stdout, os.Stderr})
	if err != nil {
		return ExitSandbox, err
	}
	return follow(e, stream, sigs, false)
}

func sandboxRemove(e *env, args []string) (int, error) {
	fs := newFlagSet("sandbox rm", "sandbox rm ID...", e.stdout)
	pos, _, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	if len(pos) == 0 {
		return ExitUsage, usageError("sandbox rm: want ID")
	}
	for _, id := range pos {
		if err := e.client.Do(e.ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id), nil, nil); err != nil {
			return ExitFailure, err
		}
		fmt.Fprintf(e.stdout, "sandbox %s removed\n", id)
	}
	return ExitOK, nil
}

func sandboxList(e *env, args []string) (int, error) {
	fs := newFlagSet("sandbox list", "sandbox list [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, _, err := parse(fs, args); err != nil {
		return ExitUsage, err
	}
	var sbs []api.Sandbox
	if err := e.client.Do(e.ctx, http.MethodGet, "/v1/sandboxes", nil, &sbs); err != nil {
		return ExitFailure, err
	}
	if *asJSON {
		return ExitOK, printJSON(e.stdout, sbs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tADDRESS\tVAULTS\tALLOW\tMODE\tRUNTIME\tCAPTURE\tAGE\tREQUESTS\tINJECTED\tDENIED\tDNS-DENIED")
	for _, s := range sbs {
		kind := "run"
		if s.Persistent {
			kind = "persistent"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", s.ID, kind, s.Address,
			joinOr(s.Vaults, "-"), joinOr(s.Allow, "-"), s.Mode, s.Runtime, s.Capture,
			time.Since(s.Created).Round(time.Second), s.Stats.Requests, s.Stats.Injected, s.Stats.Denied, s.Stats.DNSDenied)
	}
	return ExitOK, tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
