// Package cli implements the keygate command: a thin client of keygated's
// control API.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keygate/keygate/pkg/api"
)

// Exit codes of keygate itself; `keygate run` otherwise exits with its
// command's status.
const (
	ExitOK      = 0
	ExitFailure = 1   // the command failed; a one-line error was printed
	ExitUsage   = 2   // bad flags or arguments
	ExitSandbox = 125 // keygate run: the sandbox could not be started
)

// errUsage marks errors caused by how keygate was called.
var errUsage = errors.New("usage")

// usageError reports a bad invocation with a hint.
func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

// env is what a command runs with.
type env struct {
	ctx    context.Context
	client *api.Client
	stdin  *os.File
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(e *env, args []string) (int, error)
}

func commands() []command {
	return []command{
		{"vault", "create, list and archive vaults", runVault},
		{"cred", "add, rotate, remove and list credentials", runCred},
		{"run", "run a command in a new sandbox", runRun},
		{"sandbox", "create, list, exec in and remove long-lived sandboxes", runSandbox},
		{"schedule", "run commands in fresh sandboxes on a cron schedule", runSchedule},
		{"audit", "read and verify the audit log", runAudit},
		{"status", "show the agent's version, store, uptime and recent denials", runStatus},
	}
}

// Main runs the keygate command line and returns the process exit code.
func Main(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("keygate", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	socket := global.String("socket", "", "control API socket (default $"+api.SocketEnv+", then "+api.DefaultSocket+")")
	help := global.Bool("help", false, "show help")
	if err := global.Parse(args); err != nil {
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return ExitUsage
	}
	rest := global.Args()
	if *help || len(rest) == 0 || rest[0] == "help" {
		printUsage(stdout)
		if len(rest) == 0 && !*help {
			return ExitUsage
		}
		return ExitOK
	}

	e := &env{
		ctx:    context.Background(),
		client: api.NewClient(socketPath(*socket)),
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
	}
	for _, c := range commands() {
		if c.name == rest[0] {
			code, err := c.run(e, rest[1:])
			return report(stderr, code, err)
		}
	}
	fmt.Fprintf(stderr, "keygate: unknown command %q (see keygate --help)\n", rest[0])
	return ExitUsage
}

func report(stderr io.Writer, code int, err error) int {
	switch {
	case err == nil:
		return code
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "keygate: %s\n", strings.TrimPrefix(err.Error(), "usage: "))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "keygate: %v\n", oneLine(err.Error()))
	if code == 0 {
		code = ExitFailure
	}
	return code
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func socketPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(api.SocketEnv); v != "" {
		return v
	}
	return api.DefaultSocket
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: keygate [--socket PATH] COMMAND [ARGS]

keygate keeps API keys out of sandboxes: a sandbox sees a placeholder in
the key's environment variable, and keygated swaps in the real secret only
on requests to the domains the key is approved for.

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  keygate vault create prod
  keygate cred add prod openai --env OPENAI_API_KEY --domain api.openai.com < key.txt
  keygate run --vault prod -- python3 agent.py
  keygate cred rotate prod openai --secret-file new-key.txt

Run 'keygate COMMAND --help' for a command's flags. Exit status: 0 success,
1 failure (one line on stderr), 2 usage error; 'keygate run' exits with its
command's status, or 125 if the sandbox could not be started.
`)
}

// parseInterspersed parses flags that may appear before, between or after
// positional arguments, stopping at "--". It returns the positionals and
// whatever followed "--".
func parseInterspersed(fs *flag.FlagSet, args []string) (pos, tail []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		rest := fs.Args()
		// flag.Parse stops at the first positional, or consumes "--" and
		// stops after it; tell the two apart by what it consumed.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return pos, rest, nil
		}
		if len(rest) == 0 {
			return pos, nil, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a flag set that reports errors as usage errors.
func newFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: keygate %s\n\nFlags:\n", usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if ex, ok := examples[name]; ok {
			fmt.Fprintf(stdout, "\nExamples:\n  %s\n", ex)
		}
	}
	return fs
}

// parse wraps parseInterspersed, turning flag errors into usage errors and
// -h into help output.
func parse(fs *flag.FlagSet, args []string) (pos, tail []string, err error) {
	pos, tail, err = parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, nil, err // the flag package has printed fs.Usage
	}
	if err != nil {
		return nil, nil, usageError("%s: %v", fs.Name(), err)
	}
	return pos, tail, nil
}

// stringList collects a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
