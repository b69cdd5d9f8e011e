package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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

func runRun(e *env, args []string) (int, error) {
	fs := newFlagSet("run", "run [--vault V]... [--allow DOMAIN]... [--runtime native] [--capture cgroup] -- CMD [ARG]...", e.stdout)
	var vaults, allow stringList
	fs.Var(&vaults, "vault", "bind this vault's credentials to the sandbox (repeatable)")
	fs.Var(&allow, "allow", "also allow this domain, without credentials (repeatable; *.suffix and **.suffix work)")
	runtime := fs.String("runtime", "native", "sandbox runtime: native")
	capture := fs.String("capture", "", "egress capture: cgroup (default for native)")
	pos, tail, err := parse(fs, args)
	if err != nil {
		return ExitUsage, err
	}
	argv := append(pos, tail...)
	if len(argv) == 0 {
		return ExitUsage, usageError("run: no command given (keygate run [flags] -- CMD [ARG]...)")
	}
	dir, _ := os.Getwd()
	req := api.RunRequest{
		Vaults: vaults, Allow: allow, Runtime: *runtime, Capture: *capture,
		Argv: argv, Env: passedEnv(), Dir: dir,
	}

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
	defer stream.Close()
	go func() {
		<-sigs
		stream.Close()
	}()
	for {
		ev, err := stream.Next()
		if err != nil {
			return ExitSandbox, fmt.Errorf("run: %w", err)
		}
		switch ev.Event {
		case "exit":
			return ev.ExitCode, nil
		case "error":
			return ExitSandbox, fmt.Errorf("run: %s", ev.Error)
		}
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
	if len(args) == 0 || args[0] != "list" {
		return ExitUsage, usageError("sandbox: want list")
	}
	fs := newFlagSet("sandbox list", "sandbox list [--json]", e.stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, _, err := parse(fs, args[1:]); err != nil {
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
	fmt.Fprintln(tw, "ID\tADDRESS\tVAULTS\tALLOW\tRUNTIME\tCAPTURE\tAGE")
	for _, s := range sbs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Address, joinOr(s.Vaults, "-"),
			joinOr(s.Allow, "-"), s.Runtime, s.Capture, time.Since(s.Created).Round(time.Second))
	}
	return ExitOK, tw.Flush()
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
