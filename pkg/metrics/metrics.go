// Package metrics is keygate's Prometheus instrumentation: the counters
// and histograms the agent updates as it decides, and collectors that read
// the other subsystems' own counters (resolver, pin table, BPF programs,
// leaf cache) when Prometheus scrapes, so the hot paths carry no extra
// bookkeeping for them.
//
// Label values are closed sets — outcomes, reasons, capture modes, kinds —
// never sandbox IDs, host names or anything a sandbox controls, so the
// series count stays bounded whatever the sandboxes do.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every metric name.
const namespace = "keygate"

// Metrics holds the agent's own instruments. The zero value is not usable;
// create one with New.
type Metrics struct {
	reg *prometheus.Registry

	// Requests counts proxy decisions by outcome (injected, forwarded,
	// spliced, denied) and, for denials, reason ("" otherwise).
	Requests *prometheus.CounterVec
	// Injections counts secrets substituted, one per credential per request.
	Injections prometheus.Counter
	// RequestDuration observes how long requests took, by outcome: for
	// forwarded requests this is dominated by the upstream.
	RequestDuration *prometheus.HistogramVec
	// SandboxesCreated and SandboxesRemoved count sandbox lifecycles.
	SandboxesCreated, SandboxesRemoved prometheus.Counter
	// SandboxCreateSeconds observes how long creating a sandbox took.
	SandboxCreateSeconds prometheus.Histogram
	// AuditAppends counts audit records written, by kind; AuditErrors
	// those that could not be.
	AuditAppends *prometheus.CounterVec
	AuditErrors  prometheus.Counter
	// StoreOps counts vault store operations by operation and result.
	StoreOps *prometheus.CounterVec
}

// New returns Metrics registered in a fresh registry, with the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.Requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "requests_total",
		Help: "Requests and refused connections by outcome (injected, forwarded, spliced, denied) and denial reason.",
	}, []string{"outcome", "reason"})
	m.Injections = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "injections_total",
		Help: "Secrets substituted into requests, one per credential per request.",
	})
	m.RequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "proxy", Name: "request_duration_seconds",
		Help:    "Time from request headers to the end of the response, by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12), // 0.5 ms .. ~30 s
	}, []string{"outcome"})
	m.SandboxesCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "sandbox", Name: "created_total", Help: "Sandboxes created.",
	})
	m.SandboxesRemoved = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "sandbox", Name: "removed_total", Help: "Sandboxes removed.",
	})
	m.SandboxCreateSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "sandbox", Name: "create_seconds",
		Help:    "Time to create a sandbox's cgroup, network and placeholders.",
		Buckets: prometheus.ExponentialBuckets(0.002, 2, 10), // 2 ms .. ~1 s
	})
	m.AuditAppends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "appends_total", Help: "Audit records appended, by kind.",
	}, []string{"kind"})
	m.AuditErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "errors_total",
		Help: "Audit records that could not be appended (the log is broken or closed).",
	})
	m.StoreOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "store", Name: "operations_total",
		Help: "Vault store changes by operation and result (ok, error).",
	}, []string{"op", "result"})
	m.reg.MustRegister(m.Requests, m.Injections, m.RequestDuration, m.SandboxesCreated,
		m.SandboxesRemoved, m.SandboxCreateSeconds, m.AuditAppends, m.AuditErrors, m.StoreOps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Gauge registers a gauge whose value fn reports at each scrape.
func (m *Metrics) Gauge(subsystem, name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
	}, fn))
}

// Counter registers a counter whose value fn reports at each scrape; fn
// must never decrease.
func (m *Metrics) Counter(subsystem, name, help string, fn func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
	}, fn))
}

// LabeledCounters registers counters read at each scrape from fn, which
// returns one value per label value (a BPF program's exit reasons, the
// resolver's outcomes). constLabels name where they come from.
func (m *Metrics) LabeledCounters(subsystem, name, help, label string, constLabels prometheus.Labels,
	fn func() (map[string]uint64, error)) {
	m.reg.MustRegister(&mapCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, name), help,
			[]string{label}, constLabels),
		fn: fn,
	})
}

// mapCollector exports a map of counters read at scrape time.
type mapCollector struct {
	desc *prometheus.Desc
	fn   func() (map[string]uint64, error)
}

func (c *mapCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *mapCollector) Collect(ch chan<- prometheus.Metric) {
	vals, err := c.fn()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for k, v := range vals {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v), k)
	}
}

// ObserveRequest records one proxy decision.
func (m *Metrics) ObserveRequest(outcome, reason string, injected int, d time.Duration) {
	m.Requests.WithLabelValues(outcome, reason).Inc()
	m.Injections.Add(float64(injected))
	m.RequestDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// Handler serves /metrics, and the Go profiler under /debug/pprof/ for
// finding what costs CPU and memory in a running agent.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
