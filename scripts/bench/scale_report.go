package main

import (
	"fmt"
	"time"
)

// section renders the scale figures.
func (s *scaleResults) section(p printer) {
	p("## Scale\n\n")
	s.lifecycleSection(p)
	s.connectSection(p)
	s.dnsSection(p)
	s.idleSection(p)
}

func (s *scaleResults) lifecycleSection(p printer) {
	p("### Sandbox lifecycle (%d persistent sandboxes, one after another)\n\n", s.sandboxes)
	p("Each create is `POST /v1/sandboxes` (what `keygate sandbox create --vault bench` sends) timed\n")
	p("by the client until the agent answers, i.e. the sandbox's namespaces, veth, cgroup and init exist;\n")
	p("each destroy is `DELETE /v1/sandboxes/ID` (`keygate sandbox rm`). The CLI's own process start\n")
	p("(a few ms) is not included.\n\n")
	if s.lifecycleErr != "" {
		p("Stopped early: %s\n\n", s.lifecycleErr)
	}
	p("| | n | p50 | p99 | max |\n|---|--:|--:|--:|--:|\n")
	window := s.createWindow()
	rowsOf := []struct {
		name string
		ds   []time.Duration
	}{
		{"create, all", s.create},
		{fmt.Sprintf("create, last %d (≥%d live)", len(window), len(s.create)-len(window)), window},
		{"destroy, all", s.destroy},
	}
	for _, r := range rowsOf {
		ds := append([]time.Duration{}, r.ds...)
		p50, p99 := percentiles(ds)
		var mx time.Duration
		for _, d := range ds {
			mx = max(mx, d)
		}
		p("| %s | %d | %s | %s | %s |\n", r.name, len(ds), fmtDur(p50), fmtDur(p99), fmtDur(mx))
	}
	p("\n")
	if per, ok := s.perSandbox(); ok {
		p("keygated RSS: %s with no sandbox, %s with %d live: **%s per sandbox** (VmRSS; the\n",
			fmtBytes(float64(s.rssBefore)), fmtBytes(float64(s.rssLive)), len(s.create), fmtBytes(per))
		p("sandboxes' own init processes and kernel objects are not in it). keygated runs with its default\n")
		p("GC headroom (`--gc-headroom-mib 64`, docs/operations.md), so up to 64 MiB of it can be garbage\n")
		p("not yet collected: the per-sandbox figure moves with the collector's timing by up to that much.\n\n")
	}
}

func (s *scaleResults) connectSection(p printer) {
	p("### connect() latency\n\n")
	p("`kgbench connlat` resolves the name once, then times sequential `connect()`s and, separately,\n")
	p("connect plus TLS handshake (the first bytes back from the far side). Inside a sandbox every\n")
	p("connect is redirected by the cgroup program to keygated's proxy on the host.\n\n")
	p("| path | n | connect p50 | connect p99 | connect+TLS p50 | connect+TLS p99 | errors |\n")
	p("|---|--:|--:|--:|--:|--:|--:|\n")
	for _, c := range s.connect {
		if c.err != "" {
			p("| %s | | error: %s | | | | |\n", c.name, firstLine(c.err))
			continue
		}
		us := func(v int64) string { return fmtDur(time.Duration(v) * time.Microsecond) }
		p("| %s | %d | %s | %s | %s | %s | %d |\n", c.name, c.res.N, us(c.res.ConnectP50), us(c.res.ConnectP99),
			us(c.res.TLSP50), us(c.res.TLSP99), c.res.Errors)
	}
	p("\n")
}

func (s *scaleResults) dnsSection(p printer) {
	p("### Resolver\n\n")
	p("`kgbench dnsload`: 16 workers, each with its own UDP socket and one A query for the credential\n")
	p("host in flight. Inside the sandbox every port-53 packet goes to keygated's resolver, whatever\n")
	p("server was asked.\n\n")
	p("| resolver | queries/s | answered | other answers | timeouts |\n|---|--:|--:|--:|--:|\n")
	for _, d := range s.dnsRows {
		if d.err != "" {
			p("| %s | error: %s | | | |\n", d.name, firstLine(d.err))
			continue
		}
		p("| %s | %.0f | %d | %d | %d |\n", d.name, d.res.QPS, d.res.Answered, d.res.Other, d.res.Timeouts)
	}
	p("\n")
}

func (s *scaleResults) idleSection(p printer) {
	p("### Idle connections\n\n")
	p("`kgbench idle` in %d sandboxes (at most %d each: keygate caps a sandbox at 1,024 connections)\n",
		(s.idleConns+maxConnsPerSandbox-1)/maxConnsPerSandbox, maxConnsPerSandbox)
	p("opens TLS connections to the credential host, sends one keep-alive HTTP/1.1 request on each and\n")
	p("leaves them idle. keygated's RSS is read with the sandboxes up before and with every connection open.\n\n")
	if s.idleErr != "" {
		p("Problem: %s\n\n", s.idleErr)
	}
	if s.idleOpen == 0 {
		p("No connection was opened.\n\n")
		return
	}
	per, _ := s.perIdleConn()
	p("| connections open | RSS before | RSS after | per connection | keygated CPU to open them |\n")
	p("|--:|--:|--:|--:|--:|\n")
	p("| %d of %d | %s | %s | **%s** | %.2f s |\n\n", s.idleOpen, s.idleConns, fmtBytes(float64(s.idleRSSBefore)),
		fmtBytes(float64(s.idleRSSAfter)), fmtBytes(per), s.idleCPUSeconds)
}
