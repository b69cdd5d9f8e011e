package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// profileSpec is the step keygated is profiled under: the one the
// throughput targets are about.
var profileSpec = loadSpec{proto: "h1", conns: 64}

// profileResult is keygated's CPU profile under profileSpec.
type profileResult struct {
	spec  loadSpec
	file  string   // the raw profile, in the work directory
	flat  []string // `go tool pprof -top` lines: where the CPU is spent
	cum   []string // keygate's own functions by cumulative CPU
	parts []costPart
	err   string
}

// costPart is the share of keygated's CPU spent in one function and what
// it calls.
type costPart struct {
	what, fn, cumPct string
}

// costParts are the functions whose cumulative share the report names: the
// costs a request pays besides forwarding. The names are those of this
// build; a function that is gone shows as not seen.
var costParts = []struct{ what, fn string }{
	{"all request handling (proxy.ServeHTTP)", "github.com/keygate/keygate/pkg/proxy.(*Proxy).ServeHTTP"},
	{"upstream round trip (HTTP/2 client)", "github.com/keygate/keygate/pkg/proxy.(*upstreams).RoundTrip"},
	{"flushing each response write", "github.com/keygate/keygate/pkg/proxy.(*statusWriter).Flush"},
	{"redacting the secret from responses", "github.com/keygate/keygate/pkg/proxy.redactResponse"},
	{"audit log: group commit, fsync, head file", "github.com/keygate/keygate/pkg/audit.(*writer).run"},
	{"TLS writes (records to both sides)", "crypto/tls.(*Conn).Write"},
	{"TLS reads", "crypto/tls.(*Conn).Read"},
	{"TLS handshakes", "crypto/tls.(*Conn).HandshakeContext"},
	{"memory allocation", "runtime.mallocgc"},
	{"garbage collection (background marking)", "runtime.gcBgMarkWorker"},
	{"system calls (own time)", "internal/runtime/syscall/linux.Syscall6"},
}

// profileAgent repeats profileSpec for row r (not recorded in the tables)
// while fetching a CPU profile from keygated's /debug/pprof, and summarizes
// it with `go tool pprof`. It needs a keygated started with --metrics-addr.
func (e *env) profileAgent(ctx context.Context, r *row) *profileResult {
	pr := &profileResult{spec: profileSpec, file: e.path("keygated-cpu.pprof")}
	secs := max(int(e.opts.duration.Seconds()), 1)
	got := make(chan error, 1)
	go func() { got <- e.fetchProfile(ctx, secs, pr.file) }()
	// The load runs a little longer than the profile, so it covers it.
	e.runStep(ctx, r, profileSpec, time.Duration(secs)*time.Second+time.Second, startCost{})
	if err := <-got; err != nil {
		pr.err = err.Error()
		return pr
	}
	if err := pr.summarize(); err != nil {
		pr.err = err.Error()
	}
	return pr
}

// fetchProfile saves a CPU profile of secs seconds from keygated to path.
func (e *env) fetchProfile(ctx context.Context, secs int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", e.agent.metrics, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// summarize reads the profile with `go tool pprof`: the top functions by
// their own CPU, and keygate's functions by CPU including callees.
func (pr *profileResult) summarize() error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("no go tool to read the profile: %w", err)
	}
	top := func(args ...string) ([]string, error) {
		cmd := exec.Command(goTool, append(append([]string{"tool", "pprof"}, args...), pr.file)...)
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof: %w", err)
		}
		return pprofRows(string(out)), nil
	}
	if pr.flat, err = top("-top", "-nodecount=15"); err != nil {
		return err
	}
	cum, err := top("-top", "-cum", "-nodecount=300")
	if err != nil {
		return err
	}
	for _, line := range cum {
		if strings.Contains(line, "github.com/keygate/") && len(pr.cum) < 15 {
			pr.cum = append(pr.cum, line)
		}
	}
	pr.parseParts(cum)
	return nil
}

// parseParts finds each of costParts in cum, `go tool pprof -top -cum`
// rows, and keeps its cumulative share.
func (pr *profileResult) parseParts(cum []string) {
	for _, c := range costParts {
		part := costPart{what: c.what, fn: c.fn, cumPct: "not seen"}
		for _, line := range cum {
			// Columns: flat flat% sum% cum cum% name...
			f := strings.Fields(line)
			if len(f) >= 6 && strings.TrimSuffix(strings.Join(f[5:], " "), " (inline)") == c.fn {
				part.cumPct = f[4]
				break
			}
		}
		pr.parts = append(pr.parts, part)
	}
}

// pprofRows returns the table lines of `go tool pprof -top` output: the
// column header and each function's row.
func pprofRows(out string) []string {
	var rows []string
	header := false
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "flat%") {
			header = true
		}
		if header && strings.TrimSpace(line) != "" {
			rows = append(rows, strings.TrimRight(line, " "))
		}
	}
	return rows
}

// copyTo copies the raw profile into dir, for `go tool pprof` later.
func (pr *profileResult) copyTo(dir string) (string, error) {
	b, err := os.ReadFile(pr.file)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "keygated-cpu.pprof")
	return dst, os.WriteFile(dst, b, 0o644)
}

func (pr *profileResult) section(p printer) {
	p("## Where keygated's CPU goes\n\n")
	p("A CPU profile of keygated (its `/debug/pprof`, from `--metrics-addr`) over a repeat of the\n")
	p("%s step, not counted in the tables.", pr.spec)
	if pr.err != "" {
		p(" It could not be taken: %s\n\n", pr.err)
		return
	}
	p(" The raw profile is `bench/keygated-cpu.pprof`\n(`go tool pprof -http=: bench/keygated-cpu.pprof`).\n\n")
	p("| cost | share of keygated's CPU (with callees) | function |\n|---|--:|---|\n")
	for _, c := range pr.parts {
		p("| %s | %s | `%s` |\n", c.what, c.cumPct, c.fn)
	}
	p("\nThe shares overlap (a TLS write made while flushing counts in both).\n\n")
	p("By own CPU:\n\n```\n%s\n```\n\n", strings.Join(pr.flat, "\n"))
	p("keygate's functions, by CPU including what they call:\n\n```\n%s\n```\n\n", strings.Join(pr.cum, "\n"))
}
