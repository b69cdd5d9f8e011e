// Command bench measures keygate side by side with direct access and with
// the proxies an operator would otherwise deploy, in one run, against one
// upstream and one load:
//
//	make bench                 # full run; writes docs/benchmarks.md and docs/bench/*.png
//	make bench-quick           # --quick: a smaller run (under 3 minutes) into a temp dir
//	make bench ARGS=--quick    # the same
//
// It needs root, the binaries from `make build` and the tools
// scripts/bench/install.sh installs (h2load, mitmproxy, squid-openssl).
//
// The run builds a test world (pkg/testworld) named "kgbench" with its own
// prefixes, runs a non-recording HTTPS upstream inside it that answers 200
// only when the request carries the real secret, starts a keygated of its
// own, and then drives every row (direct, keygate, mitmproxy, squid, a plain
// Go reverse proxy) with the same load. Scale figures (sandbox lifecycle,
// agent memory, connect latency, resolver throughput, idle connections)
// follow. Results go to stdout as Markdown and, unless --quick, to
// docs/benchmarks.md with charts.
//
// The same binary also holds the small programs the run starts, some of
// them inside sandboxes: they are chosen by the first argument (see
// helpers).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"
)

// options are the run's flags.
type options struct {
	quick     bool
	out       string // directory for benchmarks.md and bench/*.png; "" = default
	bin       string // directory holding keygate and keygated
	duration  time.Duration
	rows      string // comma-separated row keys to run; "" = all
	sandboxes int    // live sandboxes for the lifecycle figures
	idleConns int    // idle connections for the memory figure
	skipLoad  bool
	skipScale bool
	profile   bool   // profile keygated under load (full runs; --no-profile turns it off)
	keep      bool   // keep the work directory
	hold      bool   // set up, then wait for a signal instead of measuring
	commit    string // keygate version recorded in the report; "" = git describe
}

func main() {
	// Helper programs run by the benchmark itself come first: they have
	// flags of their own.
	if len(os.Args) > 1 {
		if h, ok := helpers[os.Args[1]]; ok {
			if err := h(os.Args[2:]); err != nil {
				fmt.Fprintf(os.Stderr, "kgbench %s: %v\n", os.Args[1], err)
				os.Exit(1)
			}
			return
		}
	}

	log.SetFlags(0)
	log.SetPrefix("bench: ")
	opts := parseFlags()

	ctx, stop := notifyContext()
	defer stop()
	start := time.Now()
	if err := run(ctx, opts); err != nil {
		log.Printf("%v", err)
		os.Exit(1)
	}
	log.Printf("done in %s", time.Since(start).Round(time.Second))
}

func parseFlags() options {
	var o options
	flag.BoolVar(&o.quick, "quick", false,
		"small run: fewer steps, shorter loads, 100 sandboxes; writes to a temp dir unless --out")
	flag.StringVar(&o.out, "out", "",
		"directory for benchmarks.md and bench/*.png (default: docs/ for a full run, a temp dir for --quick)")
	flag.StringVar(&o.bin, "bin", "bin", "directory holding keygate and keygated")
	flag.DurationVar(&o.duration, "duration", 0, "length of each load step (default 5s, 1s with --quick)")
	flag.StringVar(&o.rows, "rows", "",
		"comma-separated rows to run (direct,keygate,keygate-tc,mitmproxy,squid,goproxy,relay); default all")
	flag.IntVar(&o.sandboxes, "sandboxes", 0, "live sandboxes for the lifecycle figures (default 500, 100 with --quick)")
	flag.IntVar(&o.idleConns, "idle-conns", 0,
		"idle connections for the proxy memory figure (default 5000, 2000 with --quick)")
	flag.BoolVar(&o.skipLoad, "skip-load", false, "leave out the load rows")
	flag.BoolVar(&o.skipScale, "skip-scale", false, "leave out the scale figures")
	noProfile := flag.Bool("no-profile", false, "do not take a CPU profile of keygated (quick runs take none)")
	profileProto := flag.String("profile-proto", profileSpec.proto, "protocol keygated is profiled under: h1 or h2")
	flag.BoolVar(&o.hold, "hold", false,
		"set up the world and keygated, print how to reach them, and wait for Ctrl-C (for poking by hand)")
	flag.StringVar(&o.commit, "commit", "",
		"keygate version to record in the report (default: git describe --always --dirty)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (configs and logs) after the run")
	flag.BoolVar(&verbose, "v", false, "log every step's command")
	flag.Parse()
	if flag.NArg() > 0 {
		log.Fatalf("unexpected argument %q", flag.Arg(0))
	}

	o.profile = !o.quick && !*noProfile
	if *profileProto != "h1" && *profileProto != "h2" {
		log.Fatalf("--profile-proto %q: want h1 or h2", *profileProto)
	}
	profileSpec.proto = *profileProto
	if o.duration == 0 {
		o.duration = pick(o.quick, time.Second, 5*time.Second)
	}
	if o.sandboxes == 0 {
		o.sandboxes = pick(o.quick, 100, 500)
	}
	if o.idleConns == 0 {
		o.idleConns = pick(o.quick, 2000, 5000)
	}
	return o
}

// pick returns quick's value in a quick run and full's otherwise.
func pick[T any](quick bool, quickValue, full T) T {
	if quick {
		return quickValue
	}
	return full
}

// wantRow reports whether the row with key was selected with --rows.
func (o options) wantRow(key string) bool {
	if o.rows == "" {
		return true
	}
	for _, k := range strings.Split(o.rows, ",") {
		if strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}

// run performs the whole benchmark. Everything it sets up is torn down
// before it returns, also when ctx is cancelled by a signal.
func run(ctx context.Context, o options) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (network namespaces, cgroups, BPF)")
	}
	started := time.Now()
	var cl cleanups
	defer cl.run()

	// Work directory, tools and the machine description.
	env, err := newEnv(o, &cl)
	if err != nil {
		return err
	}

	// The world, its upstream and the agent.
	if err := env.startWorld(&cl); err != nil {
		return err
	}
	if err := env.startAgent(ctx, &cl); err != nil {
		return err
	}

	if o.hold {
		progress("holding: KEYGATE_SOCKET=%s %s run --vault %s -- ...; upstream https://%s:%d/ at %s; Ctrl-C ends",
			env.agent.socket, env.keygate, benchVault, env.world.host, upstreamPort, env.world.addr)
		<-ctx.Done()
		return nil
	}

	res := &results{opts: o, machine: env.machine, started: started}
	stopWatch := env.watchOthers()
	if !o.skipLoad {
		if err := runLoadRows(ctx, env, res); err != nil {
			return err
		}
	}
	if !o.skipScale {
		if err := runScale(ctx, env, res); err != nil {
			return err
		}
	}
	res.finished = time.Now()
	res.machine.loadAfter = loadAverage()
	res.machine.others = stopWatch()

	// Report: stdout always, the docs directory and charts on request.
	fmt.Print(res.markdown(nil))
	return writeReport(env, res)
}

// verbose is set by -v.
var verbose bool

// logf logs detail shown only with -v.
func logf(format string, args ...any) {
	if verbose {
		log.Printf(format, args...)
	}
}

// progress logs a step of the run to stderr; stdout is kept for the report.
func progress(format string, args ...any) { log.Printf(format, args...) }
