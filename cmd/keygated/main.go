// Command keygated is keygate's host agent. It runs in the foreground as
// root, logs to stderr and stops cleanly on SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/keygate/keygate/hostagent"
	"github.com/keygate/keygate/internal/gctune"
	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/jail"
	"github.com/keygate/keygate/pkg/proxy"
)

func main() {
	// The same binary is the init of every sandbox and the last stage of
	// every exec into one; those roles are chosen before any flag parsing
	// or logging.
	if len(os.Args) > 1 && os.Args[1] == jail.InitArg {
		jail.RunInit()
	}
	if len(os.Args) > 1 && os.Args[1] == jail.ExecArg {
		jail.RunExec()
	}
	if len(os.Args) > 1 && os.Args[1] == jail.RunscSetupArg {
		jail.RunRunscSetup()
	}

	var cfg hostagent.Config
	var allowPrivate prefixList
	var sandboxCIDR, sandboxCIDR6, logFormat, logLevel, apiGroup string
	var gcHeadroom, auditMaxMiB int
	flag.StringVar(&cfg.StateDir, "state-dir", "/var/lib/keygate", "directory for the vault store, master key and host CA")
	flag.StringVar(&cfg.Socket, "socket", api.DefaultSocket, "control API unix socket")
	flag.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "master key file, created 0600 if absent (default STATE-DIR/master.key)")
	flag.StringVar(&cfg.UpstreamDNS, "upstream-dns", "", "upstream DNS server host[:port] (default: first nameserver in /etc/resolv.conf)")
	flag.StringVar(&cfg.UpstreamCA, "upstream-ca", "", "extra PEM CA file trusted for upstream servers")
	flag.Var(&allowPrivate, "allow-private-upstream", "CIDR of private addresses upstream names may resolve to (repeatable)")
	flag.StringVar(&sandboxCIDR, "sandbox-cidr", "10.233.0.0/16", "IPv4 range for sandbox addresses and the agent's service address")
	flag.StringVar(&sandboxCIDR6, "sandbox-cidr6", hostagent.DefaultSandboxCIDR6.String(), "IPv6 /48 for sandbox addresses and the agent's IPv6 service address; \"none\" gives sandboxes no IPv6")
	flag.StringVar(&cfg.CgroupParent, "cgroup-parent", "", "cgroup v2 directory that holds sandbox cgroups (default CGROUP2-ROOT/keygate)")
	flag.DurationVar(&cfg.CredentialRefresh, "credential-refresh", hostagent.DefaultCredentialRefresh,
		"how long the proxy serves a credential from memory before re-reading the store")
	flag.IntVar(&cfg.MaxRequestsPerSandbox, "max-requests-per-sandbox", proxy.DefaultMaxRequestsPerSandbox,
		"requests a sandbox may have in flight through the proxy at once, over all its connections; more get 429")
	flag.IntVar(&auditMaxMiB, "audit-max-mib", 256,
		"rotate the audit log (embedded store) into segments beside it past this size; they stay part of the chain: archive, never prune (0: never)")
	flag.IntVar(&cfg.AuditEtcdRecords, "audit-etcd-records", 200_000,
		"with an etcd:// store, about how many of this host's audit records stay in etcd; older ones move to STATE-DIR/audit-etcd/HOST/audit.log, which stays part of the chain (0: keep all in etcd)")
	flag.DurationVar(&cfg.RetiredRedaction, "redact-rotated-for", hostagent.DefaultRetiredRedaction,
		"how long a secret replaced by a rotation is still redacted from answers, in memory only, never sent (0: not at all)")
	flag.StringVar(&cfg.Store, "store", "", "vault store: empty for the embedded one in STATE-DIR, or etcd://h1:2379,h2:2379[?prefix=/keygate/&cert=F&key=F&ca=F&grace=30s] for a fleet")
	flag.StringVar(&cfg.Node, "node", "", "this host's name in a fleet: its audit chain and schedule claims (default: the host name)")
	flag.StringVar(&cfg.MetricsAddr, "metrics-addr", "",
		"host address for Prometheus /metrics and /debug/pprof, e.g. 127.0.0.1:9464 (default off; sandboxes can never reach it)")
	flag.StringVar(&cfg.RunscPath, "runsc", "", "gVisor's runsc binary, for --runtime runsc (default: runsc on PATH, then /usr/local/bin/runsc)")
	flag.StringVar(&cfg.RunscPlatform, "runsc-platform", "systrap", "runsc platform: systrap or ptrace (kvm needs /dev/kvm)")
	flag.StringVar(&cfg.RunscRootfs, "runsc-rootfs", "", "root directory runsc sandboxes see, read-only (default /, the host's)")
	flag.StringVar(&cfg.RunscDebugLog, "runsc-debug-log", "", "directory for runsc debug logs, one subdirectory per sandbox (default off)")
	flag.BoolVar(&cfg.InspectAll, "inspect-all", false,
		"terminate TLS for every sandbox connection; by default sandboxes without credentials, and --passthrough domains, are spliced, so certificate pinning works")
	flag.StringVar(&apiGroup, "api-group", "", "group (name or id) whose members may use the control API besides root")
	flag.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	flag.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	flag.IntVar(&gcHeadroom, "gc-headroom-mib", 64,
		"MiB the heap may grow by between garbage collections, at least: fewer collections under load for this much memory; 0 leaves GOGC alone (as does setting GOGC)")
	flag.Usage = usage
	flag.Parse()
	if flag.NArg() > 0 {
		fatal(fmt.Errorf("unexpected argument %q", flag.Arg(0)))
	}

	// Logging first, so every later step can report.
	logger, err := newLogger(logFormat, logLevel)
	if err != nil {
		fatal(err)
	}
	cfg.Logger = logger
	cfg.Version = version()
	if gcHeadroom < 0 {
		fatal(fmt.Errorf("--gc-headroom-mib %d: want 0 or more", gcHeadroom))
	}
	defer gctune.Start(uint64(gcHeadroom) << 20).Stop()
	if cfg.MaxRequestsPerSandbox < 1 {
		fatal(fmt.Errorf("--max-requests-per-sandbox %d: want 1 or more", cfg.MaxRequestsPerSandbox))
	}
	if auditMaxMiB < 0 {
		fatal(fmt.Errorf("--audit-max-mib %d: want 0 or more", auditMaxMiB))
	}
	cfg.AuditMaxBytes = int64(auditMaxMiB) << 20
	if cfg.AuditEtcdRecords < 0 {
		fatal(fmt.Errorf("--audit-etcd-records %d: want 0 or more", cfg.AuditEtcdRecords))
	}
	switch {
	case cfg.RetiredRedaction < 0:
		fatal(fmt.Errorf("--redact-rotated-for %v: want 0 or more", cfg.RetiredRedaction))
	case cfg.RetiredRedaction == 0:
		cfg.RetiredRedaction = -1 // Config's "not at all"; its 0 is the default
	}
	cfg.AllowPrivate = allowPrivate
	if cfg.SandboxCIDR, err = netip.ParsePrefix(sandboxCIDR); err != nil {
		fatal(fmt.Errorf("--sandbox-cidr: %w", err))
	}
	if sandboxCIDR6 == "none" {
		cfg.NoIPv6 = true
	} else if cfg.SandboxCIDR6, err = netip.ParsePrefix(sandboxCIDR6); err != nil {
		fatal(fmt.Errorf("--sandbox-cidr6: %w", err))
	}

	if apiGroup != "" {
		gid, err := lookupGroup(apiGroup)
		if err != nil {
			fatal(fmt.Errorf("--api-group: %w", err))
		}
		cfg.APIGroup = &gid
	}

	// Start the agent, then wait for a signal to stop it.
	agent, err := hostagent.Start(cfg)
	if err != nil {
		fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	s := <-sigs
	logger.Info("stopping", "signal", s.String())
	if err := agent.Close(); err != nil {
		logger.Error("stop", "err", err)
		os.Exit(1)
	}
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// prefixList collects repeated CIDR flags.
type prefixList []netip.Prefix

func (p *prefixList) String() string { return fmt.Sprint(*p) }

func (p *prefixList) Set(s string) error {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return err
	}
	*p = append(*p, pfx.Masked())
	return nil
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: keygated [flags]

keygated is keygate's host agent: it keeps the vaults, creates sandboxes,
captures their egress with eBPF and injects credentials on approved hosts.
It must run as root, in the foreground; stop it with SIGTERM.

Flags:
`)
	flag.PrintDefaults()
}

// version is the module version and VCS revision the binary was built
// from, as Go records them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(s string) (uint32, error) {
	g, err := user.LookupGroup(s)
	if err != nil {
		if g, err = user.LookupGroupId(s); err != nil {
			return 0, fmt.Errorf("no group %q", s)
		}
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q: gid %q: %w", s, g.Gid, err)
	}
	return uint32(id), nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "keygated: %v\n", err)
	os.Exit(1)
}
