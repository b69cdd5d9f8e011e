//go:build linux

package hostagent

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/pkg/api"
	"github.com/keygate/keygate/pkg/audit"
	"github.com/keygate/keygate/pkg/proxy"
)

// maxRecentDenials bounds the denials keygate status shows.
const maxRecentDenials = 20

// sandboxStats are a sandbox's counters, shown by sandbox list.
type sandboxStats struct {
	requests, injected, denied, spliced, dnsDenied, captureDenied atomic.Uint64
}

func (s *sandboxStats) api() api.SandboxStats {
	return api.SandboxStats{
		Requests: s.requests.Load(), Injected: s.injected.Load(), Denied: s.denied.Load(),
		Spliced: s.spliced.Load(), DNSDenied: s.dnsDenied.Load(), CaptureDenied: s.captureDenied.Load(),
	}
}

// denialRing keeps the most recent denials for keygate status.
type denialRing struct {
	mu   sync.Mutex
	buf  []api.Denial // guarded by mu; oldest first
	seen uint64       // guarded by mu; every denial ever added
}

func (r *denialRing) add(d api.Denial) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen++
	if len(r.buf) == maxRecentDenials {
		r.buf = append(r.buf[:0:0], r.buf[1:]...)
	}
	r.buf = append(r.buf, d)
}

func (r *denialRing) list() ([]api.Denial, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]api.Denial{}, r.buf...), r.seen
}

// observeDecision updates the metrics, the sandbox's counters and the
// recent denials for one proxy decision.
func (a *Agent) observeDecision(d proxy.Decision) {
	a.metrics.ObserveRequest(string(d.Outcome), string(d.Reason), len(d.Credentials), d.Duration)
	sb, _ := a.sandboxes.byIDOf(d.Sandbox)
	if sb != nil {
		sb.stats.requests.Add(1)
	}
	switch d.Outcome {
	case proxy.OutcomeInjected:
		if sb != nil {
			sb.stats.injected.Add(1)
		}
	case proxy.OutcomeSpliced:
		if sb != nil {
			sb.stats.spliced.Add(1)
		}
	case proxy.OutcomeDenied:
		if sb != nil {
			sb.stats.denied.Add(1)
		}
		a.denials.add(api.Denial{
			Time: time.Now(), Sandbox: d.Sandbox, Kind: "request", Host: d.Host,
			Reason: string(d.Reason), Detail: d.Detail,
		})
	}
}

// registerMetrics exports the subsystems' own counters, read at scrape.
func (a *Agent) registerMetrics() {
	m := a.metrics
	m.Gauge("sandbox", "live", "Sandboxes alive now.", func() float64 {
		return float64(len(a.sandboxes.list()))
	})
	m.Gauge("dns", "pins", "DNS pins (sandbox, address, name) held now.", func() float64 {
		return float64(a.pins.Len())
	})
	if l, ok := a.audit.(*audit.Etcd); ok {
		m.Gauge("audit", "etcd_moved_seq", "Seq of the last of this host's audit records moved out of etcd to STATE-DIR/audit-etcd.", func() float64 {
			seq, _ := l.Moved()
			return float64(seq)
		})
		m.Gauge("audit", "etcd_move_failing", "1 while moving this host's old audit records out of etcd fails or has stopped (the log says why); they stay in etcd.", func() float64 {
			if _, failing := l.Moved(); failing {
				return 1
			}
			return 0
		})
	}
	m.Counter("tls", "leaf_cache_hits_total", "Leaf certificates served from the cache.", func() float64 {
		hits, _ := a.leaves.Stats()
		return float64(hits)
	})
	m.Counter("tls", "leaf_cache_misses_total", "Leaf certificates issued (cache misses).", func() float64 {
		_, misses := a.leaves.Stats()
		return float64(misses)
	})
	m.LabeledCounters("dns", "queries_total", "DNS queries by outcome, and the cache, collapsing, rebinding and exfiltration-suspicion counts.",
		"outcome", nil, func() (map[string]uint64, error) {
			s := a.resolver.Stats()
			return map[string]uint64{
				"answered": s.Answered, "nxdomain_denied": s.NXDomainDenied, "refused": s.Refused,
				"servfail": s.ServFail, "malformed": s.Malformed, "cache_hit": s.CacheHit,
				"collapsed": s.Collapsed, "rebinding_dropped": s.RebindingDropped,
				"suspicious_long": s.SuspiciousLong, "suspicious_entropy": s.SuspiciousEntropy,
			}, nil
		})
	m.LabeledCounters("bpf", "events_total", "Exits of the capture programs by reason (redirects, passes and drops), summed over CPUs.",
		"reason", prometheus.Labels{"mode": "cgroup"}, func() (map[string]uint64, error) {
			if a.capture == nil {
				return nil, errors.New("capture not loaded")
			}
			return a.capture.Counters()
		})
	m.LabeledCounters("bpf", "guard_events_total", "Verdicts of the veth guard on the host end of every sandbox veth, by reason.",
		"reason", prometheus.Labels{"mode": "veth_guard"}, func() (map[string]uint64, error) {
			if a.guard == nil {
				return nil, errors.New("guard not loaded")
			}
			return a.guard.Counters()
		})
	m.LabeledCounters("bpf", "steer_events_total", "Verdicts of the tc-mode steering program on the host end of sandbox veths, by reason.",
		"reason", prometheus.Labels{"mode": "tc"}, func() (map[string]uint64, error) {
			if a.guard == nil {
				return nil, errors.New("guard not loaded")
			}
			return a.guard.SteerCounters()
		})
}

// startMetrics serves the metrics and profiler on the configured host
// address. Sandboxes cannot reach it: every TCP connection they make is
// redirected to the proxy, whatever address it names.
func (a *Agent) startMetrics() error {
	a.registerMetrics()
	if a.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	a.listeners = append(a.listeners, ln)
	srv := &http.Server{Handler: a.metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	a.log.Info("metrics listening", "addr", ln.Addr().String())
	return nil
}

// handleStatus reports the agent's version, store, uptime, sandboxes and
// recent denials.
func (a *Agent) handleStatus(w http.ResponseWriter, r *http.Request) {
	recent, total := a.denials.list()
	st := api.Status{
		Version: a.cfg.Version, Store: a.store.Engine(), Started: a.started,
		UptimeSeconds: int64(time.Since(a.started).Seconds()), Sandboxes: len(a.sandboxes.list()),
		AddressLeases: a.pool.leases(),
		Denials:       total, RecentDenials: recent, MetricsAddr: a.cfg.MetricsAddr,
	}
	respond(w, http.StatusOK, st, nil)
}
